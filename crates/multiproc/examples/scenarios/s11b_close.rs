//! S11b: S11 without sentinels: main joins the producers and closes the queue; every
//! consumer stops after draining it (`for item in &q`).

pub fn run() -> Result<(), String> {
    super::common_pc::run(3, 6, 4, super::common_pc::Stop::Close)
}
