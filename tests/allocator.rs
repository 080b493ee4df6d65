//! The allocator settings every build from this repository gets (`.cargo/config.toml`, read by
//! jemalloc's build script): without them a 10,000-backup poll round's memory stays resident
//! for 10 s, and the 64 MiB target of BENCHMARKS.md is missed.

#[test]
fn jemalloc_purges_freed_memory_within_a_second_from_a_background_thread() {
    let conf = tikv_jemalloc_ctl::config::malloc_conf::read().expect("jemalloc's config");
    for want in [
        "background_thread:true",
        "dirty_decay_ms:1000",
        "muzzy_decay_ms:0",
    ] {
        assert!(
            conf.contains(want),
            "{want} missing from malloc_conf {conf:?}"
        );
    }
}
