//! Arbitrary deltas against an arbitrary basis, fed in odd-sized pieces: must never panic,
//! never copy out of bounds, never output more than the limit.
#![no_main]

use dr_syncer_rsync::delta::DeltaApplier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let basis_len = usize::from(data[0]) * 16;
    let step = usize::from(data[1]).max(1);
    let rest = &data[2..];
    let (basis, delta) = rest.split_at(basis_len.min(rest.len()));
    let limit = 4096u64;
    let mut a = DeltaApplier::new(limit);
    let mut out = Vec::new();
    let mut input = delta;
    while !input.is_empty() && !a.is_done() {
        let n = step.min(input.len());
        match a.feed(&input[..n], basis, &mut out) {
            Ok(used) => input = &input[used..],
            Err(_) => return,
        }
    }
    assert!(out.len() as u64 <= limit);
    // output is accounted when a command is accepted, written as its bytes arrive
    assert!(out.len() as u64 <= a.output_bytes);
    if a.is_done() {
        assert_eq!(out.len() as u64, a.output_bytes);
        assert_eq!(a.literal_bytes + a.matched_bytes, a.output_bytes);
    }
});
