//! Where the `saga` command line (and the example programs) find the store and the bus when no
//! flag names them: an environment variable, else a default. The engine itself reads none of
//! these; a program that embeds it passes URLs.

use saga_engine::bus::{BusConfig, DEFAULT_PREFIX};

/// The environment variable that names the database when no `--database` is given.
pub const DATABASE_URL_ENV: &str = "SAGA_DATABASE_URL";
/// The database used when neither `--database` nor [`DATABASE_URL_ENV`] is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sagas.db";
/// The environment variable a bus URL is read from when no `--bus` is given.
pub const BUS_URL_ENV: &str = "SAGA_BUS_URL";
/// The environment variable the broker prefix is read from when no `--bus-prefix` is given.
pub const BUS_PREFIX_ENV: &str = "SAGA_BUS_PREFIX";

/// The database URL: `flag` if given, else `SAGA_DATABASE_URL`, else `sqlite://sagas.db`.
pub fn database_url(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| non_empty_env(DATABASE_URL_ENV))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// The bus: URL from `url` or `SAGA_BUS_URL` (`None`, the in-process bus, when neither is set),
/// prefix from `prefix` or `SAGA_BUS_PREFIX`, else `saga`.
pub fn bus_config(url: Option<&str>, prefix: Option<&str>) -> BusConfig {
    let url = url
        .map(str::to_string)
        .or_else(|| non_empty_env(BUS_URL_ENV))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    let prefix = prefix
        .map(str::to_string)
        .or_else(|| non_empty_env(BUS_PREFIX_ENV))
        .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    BusConfig::new(url).prefix(prefix)
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
