//! Logged packets and prefixes come from the kernel but describe traffic from anyone: the
//! parsers must reject any bytes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = caracal_agent::parse_packet(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = caracal_agent::parse_prefix(text);
    }
});
