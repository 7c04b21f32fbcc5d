//! Wiring shared by the `caracal` binary and its examples: what joins crates that only the
//! binary may see together (the lab and the agent).

pub mod lab_agents;
