//! # S11 — three producers, four consumers, four sentinels
//!
//! With several producers and several consumers, each sentinel stops exactly one consumer
//! (whoever takes it), so `main` must join every producer and then put as many `None`s as
//! there are consumers. The tutorial itself calls this "a very low way" to solve it.
//!
//! ```python
//! from multiprocessing import Process,Queue
//! import random
//! import time
//! def producer(name,q):
//!     for i in range(1,7):
//!         # processing delay
//!         time.sleep(random.random())
//!         data= 'data  %s'%i
//!         q.put(data)
//!         print('生产者 %s 生产了数据: %s'%(name,data))
//! def consumer(name,q):
//!     while 1:
//!         data= q.get()
//!         if data is None:  # stop on None
//!             print('\033[31;1m %s 消费完了 \033[0m'%name)
//!             break
//!         print('消费者 %s 收到数据: %s'%(name,data))
//! if __name__ =='__main__':
//!     q=Queue()
//!     pro_name=['alex','wusir','wang']
//!     con_name=['aaa','bb','c','ddd']
//!     pro_lis=[]
//!     for i in pro_name:  # start the producers, keep them in a list
//!         p=Process(target=producer,args=(i,q))
//!         p.start()
//!         pro_lis.append(p)
//!     for i in con_name:  # start the consumers
//!         p=Process(target=consumer,args=(i,q))
//!         p.start()
//!     for i in pro_lis:  # wait for every producer to end
//!         i.join()
//!     for i in range(len(con_name)):  # four Nones for the four consumers
//!         q.put(None)
//! ```
//!
//! What to watch for: 18 items made (data 1 to 6 by each producer), 18 received, then each
//! consumer says it is done (生产者 is producer, 消费者 consumer, 消费完了 "done").
//!
//! How ours differs: only in the usual ways (`Option` items, cloned queue handles, sleeps
//! up to 0.1 s). S11b (`s11b_close.rs`) is the same program without sentinels.
use std::error::Error;
use std::hash::BuildHasher;
use std::time::Duration;

use multiproc::{Process, Queue};
use serde::{de::DeserializeOwned, Serialize};

/// Makes six items. (Generic over the item so that S11b can use it with plain `String`s:
/// here `T` is `Option<String>`, and `data.into()` is `Some(data)`.)
pub fn producer<T>(name: &str, q: Queue<T>)
where
    T: From<String> + Serialize + DeserializeOwned,
{
    for i in 1..7 {
        std::thread::sleep(random_ms(100));
        let data = format!("data {i}");
        q.put(data.clone().into()).unwrap();
        println!("producer {name} made: {data}");
    }
}

fn consumer(name: &str, q: Queue<Option<String>>) {
    while let Some(data) = q.get().unwrap() {
        println!("consumer {name} got: {data}");
    }
    println!("{name} is done");
}

pub fn main() -> Result<(), Box<dyn Error>> {
    let q = Queue::new()?;
    let pro_name = ["alex", "wusir", "wang"];
    let con_name = ["aaa", "bb", "c", "ddd"];
    let mut pro_lis = Vec::new();
    for name in pro_name {
        let q = q.clone();
        pro_lis.push(Process::fork(move || producer(name, q))?);
    }
    for name in con_name {
        let q = q.clone();
        Process::fork(move || consumer(name, q))?;
    }
    for p in &pro_lis {
        p.join()?;
    }
    for _ in con_name {
        q.put(None)?;
    }
    Ok(())
}

/// `random.random()` seconds, scaled to `0..max` ms.
fn random_ms(max: u64) -> Duration {
    Duration::from_millis(std::hash::RandomState::new().hash_one(std::process::id()) % max)
}
