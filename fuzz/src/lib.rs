//! What the fuzz targets share: a fresh in-memory SQLite database with Hamlet's migrations, and a
//! small unit tree with an enumerator whose phone pushes.

use diesel::r2d2::ManageConnection;
use hamlet_server::auth::Principal;
use hamlet_server::auth::service::{UserDraft, insert_user};
use hamlet_server::db::{self, DbConn, DbManager};
use hamlet_server::units::import::{ImportOptions, import};
use hamlet_shared::{Role, UnitId, Username};

pub const TREE: &str = "code,name,level,parent_code
VN,Việt Nam,country,
P1,Tỉnh Tuyên Quang,province,VN
C1,Xã Nà Hang,commune,P1
V1,Thôn Nà Lầu,village,C1
V2,Bản Khuổi Phầy,village,C1
C2,Xã Thượng Lâm,commune,P1
V3,Thôn Bản Tấng,village,C2
";

/// A new empty database, migrated.
pub fn fresh_db() -> DbConn {
    let manager = DbManager::new("sqlite://:memory:").expect("url");
    let mut conn = manager.connect().expect("in-memory SQLite");
    db::run_migrations(&mut conn).expect("migrations");
    conn
}

pub fn unit_id(conn: &mut DbConn, code: &str) -> UnitId {
    db::units::find_live_by_code(conn, code)
        .expect("query")
        .expect("unit exists")
        .id
        .parse()
        .expect("uuid")
}

/// A database with [`TREE`] and an enumerator of commune C1 pushing from one phone.
pub struct PushFixture {
    pub conn: DbConn,
    pub principal: Principal,
    /// `@V1`, `@V2`, `@V3`, `@C1` in a fuzz input stand for these ids, so that seeds (and what
    /// the fuzzer grows from them) can name real villages.
    pub placeholders: Vec<(&'static str, String)>,
}

impl PushFixture {
    pub fn new() -> Self {
        let mut conn = fresh_db();
        import(&mut conn, TREE.as_bytes(), &ImportOptions::default(), |_| {}).expect("import");
        let c1 = unit_id(&mut conn, "C1");
        let draft = UserDraft {
            username: Username::parse("fuzzer").expect("username"),
            password: String::new(),
            role: Role::Enumerator,
            scope: vec![c1],
        };
        // No login happens here: any string does as the stored hash.
        let user = insert_user(&mut conn, &draft, "not-a-hash".to_owned(), None).expect("user");
        let placeholders = ["V1", "V2", "V3", "C1"]
            .into_iter()
            .zip(["@V1", "@V2", "@V3", "@C1"])
            .map(|(code, token)| (token, unit_id(&mut conn, code).to_string()))
            .collect();
        let principal = Principal {
            user_id: user.id,
            username: "fuzzer".to_owned(),
            role: Role::Enumerator,
            scope: vec![c1],
            session_id: "fuzz".to_owned(),
            device_id: uuid::Uuid::from_u128(0x6f96_19ff_8b86_d011_b42d_00c0_4fc9_64ff),
        };
        Self {
            conn,
            principal,
            placeholders,
        }
    }

    pub fn expand(&self, text: &str) -> String {
        self.placeholders
            .iter()
            .fold(text.to_owned(), |t, (token, id)| t.replace(token, id))
    }
}

impl Default for PushFixture {
    fn default() -> Self {
        Self::new()
    }
}
