//! The `saga` command line over the bundled sagas (OrderSaga). Your own program can serve the
//! same CLI over its own sagas: call `saga_engine::cli::main` with your registrations.

use std::process::ExitCode;

fn main() -> ExitCode {
    saga_engine::cli::main(|url| {
        let participants = sagas::Participants::for_saga_database(url)?;
        let options = sagas::order::Options {
            // The step-run audit, for checking that no step ever ran on two workers at once.
            record_runs: std::env::var("SAGA_RECORD_STEP_RUNS").as_deref() == Ok("1"),
            ..Default::default()
        };
        let mut registry = saga_engine::Registry::new();
        sagas::order::register_all_with(&mut registry, &participants, &options)?;
        Ok(registry)
    })
}
