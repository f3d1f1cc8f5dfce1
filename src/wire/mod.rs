//! The sans-IO wire codec (spec §2–4).

pub mod block;
pub mod vote;

pub use block::{Block, BlockType, ChangeBlock, OpenBlock, ReceiveBlock, SendBlock, StateBlock};
pub use vote::Vote;
