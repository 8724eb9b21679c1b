//! # S3 — the ticket office, without a lock
//!
//! The tutorial's 案例2: the file `db` holds `{"count":1}`, one ticket left. Three buyers
//! each look at the count, then try to buy: read the file, wait 0.1 s ("network delay"),
//! take one if there is one, wait 0.2 s, write the file back. All three read the count
//! before anyone writes it, so all three buy the single ticket.
//!
//! ```python
//! # first create a file named db in the current directory holding {"count":1}
//! # (after every run the 1 has become 0: set it back to 1 by hand)
//! from multiprocessing import Process,Lock
//! import time,json,random
//! # look at the tickets left
//! def search():
//!     dic=json.load(open('db'))
//!     print('\033[43m剩余票数%s\033[0m' %dic['count'])
//! def get():  # buy one
//!     dic=json.load(open('db'))
//!     time.sleep(0.1)       # network delay on the read: everyone gets {"count": 1}
//!     if dic['count'] >0:
//!         dic['count']-=1
//!         time.sleep(0.2)   # network delay on the write
//!         json.dump(dic,open('db','w'))
//!         # so everyone is told they got the ticket
//!         print('\033[43m购票成功\033[0m')
//! def task():
//!     search()
//!     get()
//! if __name__ == '__main__':
//!     for i in range(3): # 3 clients buying at once
//!         p=Process(target=task)
//!         p.start()
//! # 剩余票数1     (tickets left: 1)
//! # 剩余票数1
//! # 剩余票数1
//! # 购票成功      (bought)
//! # 购票成功
//! # 购票成功
//! ```
//!
//! What to watch for: three "bought" lines for one ticket, while `db` says 0 as if one
//! had been sold: each buyer read 1 and wrote back its own 1 − 1. S4
//! (`s04_ticket_lock.rs`) puts a lock around the purchase.
//!
//! How ours differs: a function that takes no arguments is already a closure, so
//! `Process(target=task)` is `Process::fork(task)`. The `db` file is written by `main` (no
//! resetting by hand) and stays in the current directory afterwards, as the seed's does.
//! `get` already has the `else` that the seed adds in the lock version; the sleeps are the
//! seed's, because they are what makes the race visible. No colours.
use std::error::Error;
use std::time::Duration;

use multiproc::Process;

/// `json.load(open('db'))['count']` (the file is `{"count":N}`; no JSON library needed).
fn load() -> i64 {
    let text = std::fs::read_to_string("db").expect("read db");
    let count = text
        .trim()
        .trim_start_matches(r#"{"count":"#)
        .trim_end_matches('}');
    count.trim().parse().expect("db holds {\"count\":N}")
}

/// `json.dump(dic, open('db', 'w'))`.
pub fn dump(count: i64) {
    std::fs::write("db", format!(r#"{{"count":{count}}}"#)).expect("write db");
}

/// Look at the tickets left.
pub fn search() {
    println!("tickets left: {}", load());
}

/// Buy one.
pub fn get() {
    let mut count = load();
    std::thread::sleep(Duration::from_millis(100)); // network delay on the read
    if count > 0 {
        count -= 1;
        std::thread::sleep(Duration::from_millis(200)); // network delay on the write
        dump(count);
        println!("bought");
    } else {
        println!("sorry, no tickets left");
    }
}

fn task() {
    search();
    get();
}

pub fn main() -> Result<(), Box<dyn Error>> {
    dump(1);
    for _ in 0..3 {
        Process::fork(task)?;
    }
    Ok(())
}
