//! As `spawn_capturing_closure`, through the builder.
use multiproc::Process;

fn main() {
    let name = String::from("captured");
    let _ = Process::builder().spawn(move |()| name.len(), ());
}
