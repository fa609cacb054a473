//! Arbitrary bytes into the frame decoder: must return Ok or Err, never panic or
//! allocate beyond the frame limit.
#![no_main]

use dr_syncer_rsync::protocol::{MAX_FRAME, Message, decode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    if let Ok(msg) = decode_frame(flags & 1, payload, MAX_FRAME) {
        // whatever decodes must re-encode to something that decodes to the same message
        assert_eq!(Message::decode(&msg.encode()).ok(), Some(msg));
    }
});
