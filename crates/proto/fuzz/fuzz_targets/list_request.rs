//! A `FlowListRequest` from any client, with the hand-decoded `PolicyMatch` (new and v3.30
//! forms): decoding and turning its filter into an expression must never panic.
#![no_main]

use caracal_proto::goldmane::FlowListRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = FlowListRequest::decode(data) {
        if let Some(filter) = request.filter {
            let expr = caracal_proto::filter_to_expr(&filter);
            let _ = expr.to_string();
            let reencoded = filter.encode_to_vec();
            let _ = caracal_proto::goldmane::Filter::decode(reencoded.as_slice());
        }
    }
});
