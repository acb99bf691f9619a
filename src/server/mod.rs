//! The thin storage and metadata server (DESIGN.md §7–§8).

pub mod chunk_store;
