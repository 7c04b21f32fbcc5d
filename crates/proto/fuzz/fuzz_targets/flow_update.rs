//! Bytes from the network as a `FlowUpdate` (what Felix sends) and a `FlowBatch` (what agents
//! send): decoding and conversion must reject bad input without panicking, and an accepted
//! flow must survive the trip back to the wire unchanged.
#![no_main]

use caracal_flow::Flow;
use caracal_proto::caracal::v1::FlowBatch;
use caracal_proto::goldmane::{self as wire, FlowUpdate};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = FlowUpdate::decode(data) {
        if let Some(Ok(flow)) = update.flow.map(Flow::try_from) {
            let back = Flow::try_from(wire::Flow::from(&flow)).expect("a converted flow converts again");
            assert_eq!(back, flow);
        }
    }
    if let Ok(batch) = FlowBatch::decode(data) {
        for flow in batch.flows {
            let _ = Flow::try_from(flow);
        }
    }
});
