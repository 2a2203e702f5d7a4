//! `saga`: the facade of the saga orchestration engine. It re-exports the engine
//! ([`saga_engine`], as `saga::engine`) and the bundled sagas ([`sagas`]) so an application
//! needs one dependency. The README below is compiled as a doctest, so its example stays true.
#![doc = include_str!("../README.md")]

pub use saga_engine as engine;
pub use sagas;
