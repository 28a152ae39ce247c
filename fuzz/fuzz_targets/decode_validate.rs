//! Raw bytes as they could arrive on `user_events` → decode_envelope →
//! Command::from_data → validate; see `polystream_fuzz::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // `./dev fuzz` names the corpus directory: start from a valid
        // envelope of every command type, written from the contract itself.
        if let Ok(dir) = std::env::var("POLYSTREAM_FUZZ_SEEDS") {
            for (i, seed) in polystream_fuzz::seeds().iter().enumerate() {
                let _ = std::fs::write(format!("{dir}/seed-{i:02}.json"), seed);
            }
        }
    },
    |data: &[u8]| polystream_fuzz::check(data)
);
