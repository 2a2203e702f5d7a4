//! The `saga` command line over the bundled sagas (OrderSaga). Your own program can serve the
//! same CLI over its own sagas: call `saga_engine::cli::main` with your registrations.

use std::process::ExitCode;

fn main() -> ExitCode {
    saga_engine::cli::main(|url| {
        let participants = sagas::Participants::for_saga_database(url)?;
        let mut registry = saga_engine::Registry::new();
        sagas::register_all(&mut registry, &participants)?;
        Ok(registry)
    })
}
