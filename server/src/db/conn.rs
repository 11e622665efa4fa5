//! The connection enum over both backends. Kept alone in its module: the derive emits
//! `MultiBackend` and a helper module next to the enum (diesel-notes.md, pitfall 10).

use diesel::{PgConnection, SqliteConnection};

/// A connection to whichever backend `HAMLET_DATABASE_URL` names.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}
