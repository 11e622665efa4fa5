//! The dashboard's words: one table per language. Vietnamese is the default; `?lang=vi|en`,
//! the `hamlet_lang` cookie, then `Accept-Language` choose another.

use super::session::LANG_COOKIE;
use actix_web::HttpRequest;
use hamlet_shared::UnitLevel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vi" => Some(Self::Vi),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Vi => "vi",
            Self::En => "en",
        }
    }

    /// The language of a request: `?lang=`, else the cookie, else `Accept-Language`, else vi.
    pub fn of(req: &HttpRequest) -> Self {
        let query = req
            .query_string()
            .split('&')
            .find_map(|kv| kv.strip_prefix("lang=").and_then(Lang::parse));
        if let Some(l) = query {
            return l;
        }
        if let Some(l) = req.cookie(LANG_COOKIE).and_then(|c| Lang::parse(c.value())) {
            return l;
        }
        let accept = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for part in accept.split(',') {
            let tag = part.split(';').next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(l) = Lang::parse(primary) {
                return l;
            }
        }
        Self::Vi
    }

    /// Whether the request asked for a language explicitly (so it is remembered in a cookie).
    pub fn asked(req: &HttpRequest) -> Option<Self> {
        req.query_string()
            .split('&')
            .find_map(|kv| kv.strip_prefix("lang=").and_then(Lang::parse))
    }

    pub fn t(self) -> &'static Strings {
        match self {
            Self::Vi => &VI,
            Self::En => &EN,
        }
    }
}

/// Every string of the UI.
pub struct Strings {
    pub app_name: &'static str,
    pub skip_to_content: &'static str,
    pub login_title: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub log_in: &'static str,
    pub log_out: &'static str,
    pub bad_login: &'static str,
    pub too_many_logins: &'static str,
    pub signed_in_as: &'static str,
    pub nav_overview: &'static str,
    pub nav_activity: &'static str,
    pub nav_conflicts: &'static str,
    pub language: &'static str,
    pub breadcrumb: &'static str,
    pub households: &'static str,
    pub members: &'static str,
    pub indicator: &'static str,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub unknown: &'static str,
    pub ratio: &'static str,
    pub target: &'static str,
    pub no_data: &'static str,
    pub suppressed: &'static str,
    pub suppressed_note: &'static str,
    pub children: &'static str,
    pub no_children: &'static str,
    pub name: &'static str,
    pub sort_by: &'static str,
    pub ascending: &'static str,
    pub descending: &'static str,
    pub sort: &'static str,
    pub furthest_behind: &'static str,
    pub exports: &'static str,
    pub download_csv: &'static str,
    pub download_xlsx: &'static str,
    pub indicators: &'static str,
    pub as_of: &'static str,
    pub devices: &'static str,
    pub device: &'static str,
    pub user: &'static str,
    pub villages: &'static str,
    pub last_sync: &'static str,
    pub last_seen: &'static str,
    pub never: &'static str,
    pub status: &'static str,
    pub revoked: &'static str,
    pub active: &'static str,
    pub revoke: &'static str,
    pub device_revoked: &'static str,
    pub stale_days: &'static str,
    pub show: &'static str,
    pub stale_villages: &'static str,
    pub stale_villages_note: &'static str,
    pub no_stale_villages: &'static str,
    pub not_synced_for: &'static str,
    pub no_devices: &'static str,
    pub village: &'static str,
    pub field: &'static str,
    pub record: &'static str,
    pub record_household: &'static str,
    pub record_member: &'static str,
    pub current_value: &'static str,
    pub incoming_value: &'static str,
    pub keep_current: &'static str,
    pub take_incoming: &'static str,
    pub other_value: &'static str,
    pub set_value: &'static str,
    pub no_conflicts: &'static str,
    pub conflict_resolved: &'static str,
    pub created_at: &'static str,
    pub shown_first: &'static str,
    pub error_title: &'static str,
    pub error_bad_request: &'static str,
    pub error_forbidden: &'static str,
    pub error_csrf: &'static str,
    pub error_not_found: &'static str,
    pub error_conflict: &'static str,
    pub error_unavailable: &'static str,
    pub error_internal: &'static str,
    pub back_to_overview: &'static str,
    /// Labels of `hamlet_shared::aggregates::INDICATOR_KEYS`, in that order.
    pub indicator_names: [&'static str; 9],
    /// country, province, district, commune, village.
    pub levels: [&'static str; 5],
    /// Labels of record fields (the contract's names); a field not listed shows its name.
    pub fields: &'static [(&'static str, &'static str)],
    /// yes, no, unknown.
    pub tri: [&'static str; 3],
}

impl Strings {
    pub fn indicator(&self, key: &str) -> &'static str {
        hamlet_shared::aggregates::INDICATOR_KEYS
            .iter()
            .position(|k| *k == key)
            .map_or("?", |i| self.indicator_names[i])
    }

    pub fn field(&self, name: &str) -> Option<&'static str> {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    pub fn level(&self, level: UnitLevel) -> &'static str {
        self.levels[match level {
            UnitLevel::Country => 0,
            UnitLevel::Province => 1,
            UnitLevel::District => 2,
            UnitLevel::Commune => 3,
            UnitLevel::Village => 4,
        }]
    }
}

pub static VI: Strings = Strings {
    app_name: "Hamlet — Bảng điều khiển chuyển đổi số",
    skip_to_content: "Chuyển đến nội dung chính",
    login_title: "Đăng nhập",
    username: "Tên đăng nhập",
    password: "Mật khẩu",
    log_in: "Đăng nhập",
    log_out: "Đăng xuất",
    bad_login: "Tên đăng nhập hoặc mật khẩu không đúng.",
    too_many_logins: "Quá nhiều lần đăng nhập sai. Vui lòng thử lại sau (giây):",
    signed_in_as: "Đang đăng nhập:",
    nav_overview: "Tổng quan",
    nav_activity: "Hoạt động nhóm",
    nav_conflicts: "Xung đột dữ liệu",
    language: "Ngôn ngữ",
    breadcrumb: "Đường dẫn",
    households: "Hộ gia đình",
    members: "Nhân khẩu",
    indicator: "Chỉ tiêu",
    numerator: "Tử số",
    denominator: "Mẫu số",
    unknown: "Chưa rõ",
    ratio: "Tỷ lệ",
    target: "Mục tiêu",
    no_data: "Chưa có dữ liệu",
    suppressed: "Ẩn (ô nhỏ)",
    suppressed_note: "Đơn vị có ít hộ hơn ngưỡng công bố: tỷ lệ được ẩn để bảo vệ dữ liệu cá nhân.",
    children: "Đơn vị trực thuộc",
    no_children: "Không có đơn vị trực thuộc.",
    name: "Tên",
    sort_by: "Sắp xếp theo",
    ascending: "Tăng dần",
    descending: "Giảm dần",
    sort: "Sắp xếp",
    furthest_behind: "Đơn vị chậm nhất trước",
    exports: "Xuất dữ liệu",
    download_csv: "Tải CSV",
    download_xlsx: "Tải XLSX",
    indicators: "Các chỉ tiêu",
    as_of: "Ngày",
    devices: "Thiết bị",
    device: "Thiết bị",
    user: "Người dùng",
    villages: "Thôn/bản",
    last_sync: "Đồng bộ gần nhất",
    last_seen: "Hoạt động gần nhất",
    never: "Chưa bao giờ",
    status: "Trạng thái",
    revoked: "Đã thu hồi",
    active: "Đang hoạt động",
    revoke: "Thu hồi",
    device_revoked: "Đã thu hồi thiết bị.",
    stale_days: "Số ngày không đồng bộ",
    show: "Xem",
    stale_villages: "Thôn/bản chưa đồng bộ",
    stale_villages_note: "Thôn/bản mà không điện thoại nào đồng bộ trong số ngày đã chọn.",
    no_stale_villages: "Mọi thôn/bản đều đã đồng bộ gần đây.",
    not_synced_for: "Không đồng bộ quá hạn",
    no_devices: "Không có thiết bị nào.",
    village: "Thôn/bản",
    field: "Trường",
    record: "Bản ghi",
    record_household: "hộ gia đình",
    record_member: "nhân khẩu",
    current_value: "Giá trị hiện tại",
    incoming_value: "Giá trị gửi đến",
    keep_current: "Giữ giá trị hiện tại",
    take_incoming: "Lấy giá trị gửi đến",
    other_value: "Giá trị khác",
    set_value: "Đặt giá trị này",
    no_conflicts: "Không có xung đột cần xử lý.",
    conflict_resolved: "Đã xử lý xung đột.",
    created_at: "Thời điểm",
    shown_first: "Chỉ hiển thị các mục đầu tiên:",
    error_title: "Không thực hiện được",
    error_bad_request: "Yêu cầu không hợp lệ.",
    error_forbidden: "Bạn không có quyền xem trang này.",
    error_csrf: "Biểu mẫu đã hết hạn hoặc không hợp lệ. Vui lòng tải lại trang và thử lại.",
    error_not_found: "Không tìm thấy.",
    error_conflict: "Thao tác xung đột với trạng thái hiện tại.",
    error_unavailable: "Máy chủ đang bận hoặc cơ sở dữ liệu không truy cập được. Vui lòng thử lại sau.",
    error_internal: "Lỗi máy chủ.",
    back_to_overview: "Về trang tổng quan",
    indicator_names: [
        "Người dân có điện thoại thông minh",
        "Hộ có điện thoại thông minh",
        "Người trưởng thành có tài khoản giao dịch",
        "Người trưởng thành có điện thoại thông minh",
        "Người trưởng thành có định danh VNeID mức 2",
        "Người trưởng thành dùng dịch vụ công trực tuyến",
        "Người trưởng thành thanh toán không dùng tiền mặt",
        "Người trưởng thành có chữ ký số",
        "Hộ có Internet băng rộng cố định",
    ],
    levels: [
        "Quốc gia",
        "Tỉnh/thành phố",
        "Quận/huyện",
        "Xã/phường",
        "Thôn/bản",
    ],
    fields: &[
        ("village_id", "Thôn/bản"),
        ("head_name", "Tên chủ hộ"),
        ("address", "Địa chỉ"),
        ("fixed_broadband", "Internet băng rộng cố định"),
        ("surveyed_on", "Ngày khảo sát"),
        ("household_id", "Hộ"),
        ("full_name", "Họ và tên"),
        ("birth_year", "Năm sinh"),
        ("sex", "Giới tính"),
        ("owns_smartphone", "Có điện thoại thông minh"),
        ("has_transaction_account", "Có tài khoản giao dịch"),
        ("vneid_level2", "VNeID mức 2"),
        ("uses_online_public_services", "Dùng dịch vụ công trực tuyến"),
        ("uses_cashless_payment", "Thanh toán không dùng tiền mặt"),
        ("has_digital_signature", "Có chữ ký số"),
    ],
    tri: ["Có", "Không", "Chưa rõ"],
};

pub static EN: Strings = Strings {
    app_name: "Hamlet — Digital transformation dashboard",
    skip_to_content: "Skip to main content",
    login_title: "Log in",
    username: "Username",
    password: "Password",
    log_in: "Log in",
    log_out: "Log out",
    bad_login: "Invalid username or password.",
    too_many_logins: "Too many failed logins. Try again later (seconds):",
    signed_in_as: "Signed in as",
    nav_overview: "Overview",
    nav_activity: "Team activity",
    nav_conflicts: "Conflicts",
    language: "Language",
    breadcrumb: "Breadcrumb",
    households: "Households",
    members: "Members",
    indicator: "Indicator",
    numerator: "Numerator",
    denominator: "Denominator",
    unknown: "Unknown",
    ratio: "Ratio",
    target: "Target",
    no_data: "No data yet",
    suppressed: "Suppressed (small cell)",
    suppressed_note: "This unit has fewer households than the disclosure threshold: ratios are withheld to protect personal data.",
    children: "Units below",
    no_children: "No units below this one.",
    name: "Name",
    sort_by: "Sort by",
    ascending: "Ascending",
    descending: "Descending",
    sort: "Sort",
    furthest_behind: "Furthest behind first",
    exports: "Export",
    download_csv: "Download CSV",
    download_xlsx: "Download XLSX",
    indicators: "Indicators",
    as_of: "As of",
    devices: "Devices",
    device: "Device",
    user: "User",
    villages: "Villages",
    last_sync: "Last sync",
    last_seen: "Last seen",
    never: "Never",
    status: "Status",
    revoked: "Revoked",
    active: "Active",
    revoke: "Revoke",
    device_revoked: "Device revoked.",
    stale_days: "Days without sync",
    show: "Show",
    stale_villages: "Villages not synced",
    stale_villages_note: "Villages where no phone has synced within the chosen number of days.",
    no_stale_villages: "Every village has synced recently.",
    not_synced_for: "Not synced recently",
    no_devices: "No devices.",
    village: "Village",
    field: "Field",
    record: "Record",
    record_household: "household",
    record_member: "member",
    current_value: "Current value",
    incoming_value: "Incoming value",
    keep_current: "Keep current",
    take_incoming: "Take incoming",
    other_value: "Another value",
    set_value: "Set this value",
    no_conflicts: "No conflicts to review.",
    conflict_resolved: "Conflict resolved.",
    created_at: "When",
    shown_first: "Only the first entries are shown:",
    error_title: "Could not do that",
    error_bad_request: "The request is not valid.",
    error_forbidden: "You may not see this page.",
    error_csrf: "The form has expired or is invalid. Reload the page and try again.",
    error_not_found: "Not found.",
    error_conflict: "That conflicts with the current state.",
    error_unavailable: "The server is busy or the database is unreachable. Try again later.",
    error_internal: "Server error.",
    back_to_overview: "Back to the overview",
    indicator_names: [
        "Population with a smartphone",
        "Households with a smartphone",
        "Adults with a transaction account",
        "Adults with a smartphone",
        "Adults with VNeID level 2",
        "Adults using online public services",
        "Adults using cashless payment",
        "Adults with a digital signature",
        "Households with fixed broadband",
    ],
    levels: ["Country", "Province", "District", "Commune", "Village"],
    fields: &[
        ("village_id", "Village"),
        ("head_name", "Head of household"),
        ("address", "Address"),
        ("fixed_broadband", "Fixed broadband"),
        ("surveyed_on", "Surveyed on"),
        ("household_id", "Household"),
        ("full_name", "Full name"),
        ("birth_year", "Birth year"),
        ("sex", "Sex"),
        ("owns_smartphone", "Owns a smartphone"),
        ("has_transaction_account", "Has a transaction account"),
        ("vneid_level2", "VNeID level 2"),
        ("uses_online_public_services", "Uses online public services"),
        ("uses_cashless_payment", "Uses cashless payment"),
        ("has_digital_signature", "Has a digital signature"),
    ],
    tri: ["Yes", "No", "Unknown"],
};

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn language_from_query_cookie_header_default() {
        let req = TestRequest::default().to_http_request();
        assert_eq!(Lang::of(&req), Lang::Vi, "Vietnamese by default");
        let req = TestRequest::default()
            .insert_header(("accept-language", "fr-FR, en-GB;q=0.8, vi;q=0.5"))
            .to_http_request();
        assert_eq!(Lang::of(&req), Lang::En, "the first supported language");
        let req = TestRequest::default()
            .insert_header(("accept-language", "en"))
            .cookie(actix_web::cookie::Cookie::new(LANG_COOKIE, "vi"))
            .to_http_request();
        assert_eq!(Lang::of(&req), Lang::Vi, "the cookie beats the header");
        let req = TestRequest::with_uri("/dashboard?sort=name&lang=en")
            .cookie(actix_web::cookie::Cookie::new(LANG_COOKIE, "vi"))
            .to_http_request();
        assert_eq!(Lang::of(&req), Lang::En, "the query beats the cookie");
        assert_eq!(Lang::asked(&req), Some(Lang::En));
    }

    #[test]
    fn every_indicator_and_level_has_a_label() {
        for t in [&VI, &EN] {
            for key in hamlet_shared::aggregates::INDICATOR_KEYS {
                assert_ne!(t.indicator(key), "?");
            }
            for (name, label) in t.fields {
                assert!(!label.is_empty(), "{name}");
            }
        }
    }
}
