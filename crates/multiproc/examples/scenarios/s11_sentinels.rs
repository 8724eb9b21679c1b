//! S11: 3 producers, 4 consumers; main joins the producers, then puts 4 sentinels.

pub fn run() -> Result<(), String> {
    super::common_pc::run(3, 6, 4, super::common_pc::Stop::Sentinels)
}
