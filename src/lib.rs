//! `saga`: the facade of the saga orchestration engine. It re-exports the engine
//! ([`saga_engine`]) and the bundled sagas ([`sagas`]) so an application needs one dependency.

pub use saga_engine as engine;
pub use sagas;
