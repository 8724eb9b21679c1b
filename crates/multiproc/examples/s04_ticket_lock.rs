//! # S4 — the ticket office, with a lock
//!
//! S3 (`s03_ticket_race.rs`) with a `Lock` around the purchase: looking at the count is
//! still concurrent, but reading, decrementing and writing back the file happen in one
//! buyer at a time. Exactly one buyer gets the ticket; the others are told there is none.
//!
//! ```python
//! # search() as before; get() gains an else:
//! def get():  # buy one
//!     dic=json.load(open('db'))
//!     time.sleep(0.1)
//!     if dic['count'] >0:
//!         dic['count']-=1
//!         time.sleep(0.2)
//!         json.dump(dic,open('db','w'))
//!         print('\033[43m购票成功\033[0m')
//!     else:
//!         print('sorry,没票了亲!')
//! def task(lock):
//!     search()
//!     # buying is where the data changes, so that is where the lock goes
//!     lock.acquire()
//!     get()
//!     lock.release()
//! if __name__ == '__main__':
//!     lock = Lock() # make a lock
//!     for i in range(3): # 3 clients buying at once
//!         p=Process(target=task,args=(lock,)) # the lock is passed to task
//!         p.start()
//! # 剩余票数1
//! # 剩余票数1
//! # 剩余票数1
//! # 购票成功   # the lucky one
//! # sorry,没票了亲!
//! # sorry,没票了亲!
//! ```
//!
//! What to watch for: one "bought", two "sorry", and `db` ends at 0. The purchases now
//! take 0.3 s each, one after the other: safety paid for with speed, as the tutorial says.
//!
//! How ours differs: `search` and `get` are S3's own (this file includes it as a module).
//! The lock is held by a guard for the length of a block — `with lock:` — so an error
//! inside `get` cannot leave it held; and a buyer killed while holding it would not block
//! the others for ever: the next `lock()` gets it, as `Err(OwnerDied(guard))`.
use std::error::Error;

use multiproc::{Lock, OwnerDied, Process};

#[path = "s03_ticket_race.rs"]
#[allow(dead_code)] // its main
mod s03;
use s03::{dump, get, search};

fn task(lock: Lock) {
    search();
    let _guard = lock.lock().unwrap_or_else(OwnerDied::into_inner);
    get();
}

pub fn main() -> Result<(), Box<dyn Error>> {
    dump(1);
    let lock = Lock::new()?;
    for _ in 0..3 {
        let lock = lock.clone();
        Process::fork(move || task(lock))?;
    }
    Ok(())
}
