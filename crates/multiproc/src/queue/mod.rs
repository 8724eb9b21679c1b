//! Queues.
mod ring;
