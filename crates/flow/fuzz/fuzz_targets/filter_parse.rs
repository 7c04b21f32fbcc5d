//! The filter parser takes text from HTTP query strings and alert rules: it must never panic,
//! and whatever it accepts must print to text that parses back to the same expression.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = caracal_flow::filter::parse(text) {
        let printed = expr.to_string();
        let reparsed = caracal_flow::filter::parse(&printed).expect("printed filters parse");
        assert_eq!(reparsed, expr, "{printed}");
    }
});
