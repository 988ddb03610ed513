//! `MemoryStore` against the whole Store conformance suite of `tidings-testkit`: one test per
//! case, each on a fresh store (`cargo test -p tidings-memory --test conformance`).

tidings_testkit::store_conformance!(async { tidings_memory::MemoryStore::new() });
