//! S5: `Queue(3)`: put 3, `put_nowait` a 4th, `full()`, get 3, `get_nowait`, `empty()`.

use multiproc::queue::{TryGetError, TryPutError};
use multiproc::Queue;

pub fn run() -> Result<(), String> {
    let q: Queue<i32> = Queue::bounded(3).map_err(|e| e.to_string())?;
    for x in [3, 2, 1] {
        q.put(x).map_err(|e| e.to_string())?;
    }
    let fourth_refused = match q.try_put(4) {
        Err(TryPutError::Full(4)) => {
            println!("the queue is full");
            true
        }
        _ => false,
    };
    let full = q.is_full();
    println!("{full}");
    let mut got = Vec::new();
    for _ in 0..3 {
        let x = q.get().map_err(|e| e.to_string())?;
        println!("{x}");
        got.push(x);
    }
    let empty_refused = match q.try_get() {
        Err(TryGetError::Empty) => {
            println!("the queue is empty");
            true
        }
        _ => false,
    };
    let empty = q.is_empty();
    println!("{empty}");
    if !fourth_refused {
        return Err("the 4th put_nowait did not fail with Full".into());
    }
    if !full || !empty {
        return Err(format!("full() = {full}, empty() = {empty}"));
    }
    if got != [3, 2, 1] {
        return Err(format!("not FIFO: {got:?}"));
    }
    if !empty_refused {
        return Err("get_nowait on an empty queue did not fail with Empty".into());
    }
    Ok(())
}
