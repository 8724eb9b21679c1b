//! S10: 1 producer, 2 consumers; main joins the producer, then puts one sentinel per consumer.

pub fn run() -> Result<(), String> {
    super::common_pc::run(1, 9, 2, super::common_pc::Stop::Sentinels)
}
