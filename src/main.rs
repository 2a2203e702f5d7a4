//! The `saga` command line over the bundled sagas: OrderSaga (local and over events), the
//! booking that waits on a timer and a signal, and the trip with its loyalty child saga. Your own
//! program can serve the same CLI over its own sagas: call `saga_cli::main` with your
//! registrations.

use std::process::ExitCode;

fn main() -> ExitCode {
    saga_cli::main(|context| {
        let participants = sagas::Participants::for_saga_database(&context.database_url)?;
        let defaults = sagas::order::Options::default();
        // How long one attempt of an OrderSaga step may run (over events: how long a reply may
        // take), for deployments and test runs slower than the default's 10 s allow.
        let step_timeout = match std::env::var("SAGA_ORDER_STEP_TIMEOUT") {
            Ok(text) => humantime::parse_duration(&text)
                .map_err(|e| format!("SAGA_ORDER_STEP_TIMEOUT=`{text}`: {e}"))?,
            Err(_) => defaults.step_timeout,
        };
        let options = sagas::order::Options {
            // The step-run audit, for checking that no step ever ran on two workers at once.
            record_runs: std::env::var("SAGA_RECORD_STEP_RUNS").as_deref() == Ok("1"),
            step_timeout,
            ..defaults
        };
        let mut registry = saga_engine::Registry::new();
        // With a broker, `OrderPlaced` starts the OrderSaga whose participants are services on
        // the bus (`cargo run --example order_services`); without one, the local OrderSaga.
        let over_events = context.bus_url.is_some();
        sagas::order::register_both(&mut registry, &participants, &options, over_events)?;
        // A booking that waits on a timer, then on a payment signal (`saga signal ID paid`), and
        // a trip: parallel bookings, held 10 minutes for its payment, then a loyalty child saga.
        let local = sagas::participants::participants_url(&context.database_url);
        sagas::booking::register(&mut registry, &local)?;
        sagas::trip::register(&mut registry, &local, std::time::Duration::from_secs(600))?;
        Ok(registry)
    })
}
