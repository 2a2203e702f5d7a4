//! `saga`: the demo package of the saga orchestration engine: the stock `saga` binary, the
//! examples and the integration tests. It re-exports the engine ([`saga_engine`], as
//! `saga::engine`), the command line ([`saga_cli`], as `saga::cli`) and the bundled sagas
//! ([`sagas`]). The README below is compiled as a doctest, so its example stays true.
#![doc = include_str!("../README.md")]

pub use saga_cli as cli;
pub use saga_engine as engine;
pub use sagas;
