//! The units CSV import: any file either imports (and the tree and counters check clean) or is
//! refused with the lines at fault and nothing written. Never an internal error: the file is an
//! operator's input.
#![no_main]

use diesel::prelude::*;
use hamlet_server::db::{DbConn, schema::units};
use hamlet_server::units::import::{ImportError, ImportOptions, import};
use hamlet_server::verify::verify;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

/// Imports accumulate (renames, parents already in the database) until this many have run.
const IMPORTS_PER_DATABASE: u32 = 200;

thread_local! {
    static STATE: RefCell<(DbConn, u32)> = RefCell::new((hamlet_fuzz::fresh_db(), 0));
}

fn unit_count(conn: &mut DbConn) -> i64 {
    units::table.count().get_result(conn).expect("count")
}

fuzz_target!(|data: &[u8]| {
    STATE.with_borrow_mut(|(conn, runs)| {
        *runs += 1;
        if *runs > IMPORTS_PER_DATABASE {
            *conn = hamlet_fuzz::fresh_db();
            *runs = 1;
        }
        let before = unit_count(conn);
        match import(conn, data, &ImportOptions::default(), |_| {}) {
            Ok(report) => {
                assert_eq!(
                    unit_count(conn) - before,
                    report.created as i64,
                    "units written != units created"
                );
                let check = verify(conn, false).expect("verify");
                assert!(
                    check.is_clean(),
                    "tree differs after an import: {:?}",
                    check.problems
                );
            }
            Err(ImportError::Invalid(lines)) => {
                assert!(!lines.is_empty(), "refused without a line at fault");
                assert_eq!(unit_count(conn), before, "a refused file wrote units");
            }
            Err(ImportError::App(e)) => panic!("an import failed internally: {e}"),
        }
    });
});
