//! The dashboard's HTML, rendered on the server with maud (escaped by default). Charts are
//! inline SVG; no script runs in the browser.

use super::i18n::{Lang, Strings};
use crate::aggregates::overview::{Overview, SortKey};
use crate::auth::activity::TeamActivity;
use hamlet_shared::aggregates::{Aggregate, INDICATOR_KEYS, Indicator};
use hamlet_shared::sync::ConflictInfo;
use hamlet_shared::{RecordType, Role, UnitId};
use maud::{DOCTYPE, Markup, html};
use std::collections::HashMap;

/// National targets drawn as lines on the bars (Vietnam's digital-transformation programme for
/// 2025: 80% of people with a smartphone, 80% of adults with a transaction account).
pub const NATIONAL_TARGETS: [(&str, f64); 3] = [
    ("population_with_smartphone", 0.80),
    ("adults_with_smartphone", 0.80),
    ("adults_with_transaction_account", 0.80),
];

pub fn target_of(key: &str) -> Option<f64> {
    NATIONAL_TARGETS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
}

/// What every page of a signed-in user needs.
pub struct Chrome<'a> {
    pub lang: Lang,
    pub username: &'a str,
    pub role: Role,
    pub csrf: &'a str,
    /// The unit the navigation links point at.
    pub unit: Option<UnitId>,
    /// The path of the current page (for the language switch).
    pub here: &'a str,
}

/// A whole number with the language's thousands separator.
pub fn number(lang: Lang, n: i64) -> String {
    let sep = if lang == Lang::Vi { '.' } else { ',' };
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A ratio as a percentage with one decimal, in the language's decimal mark.
pub fn percent(lang: Lang, r: f64) -> String {
    let s = format!("{:.1}\u{a0}%", r * 100.0);
    if lang == Lang::Vi { s.replace('.', ",") } else { s }
}

/// `YYYY-MM-DD HH:MM UTC` from microseconds since the epoch.
pub fn when(us: i64) -> String {
    let t = crate::clock::rfc3339(us);
    format!("{} {} UTC", &t[..10], t.get(11..16).unwrap_or(""))
}

fn css_href() -> &'static str {
    "/dashboard/style.css"
}

/// The page frame: skip link, header with navigation and language switch, main content.
pub fn layout(lang: Lang, title: &str, chrome: Option<&Chrome<'_>>, body: Markup) -> Markup {
    let t = lang.t();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Hamlet" }
                link rel="stylesheet" href=(css_href());
            }
            body {
                a.skip href="#main" { (t.skip_to_content) }
                header.top {
                    div.brand { (t.app_name) }
                    @if let Some(c) = chrome {
                        nav aria-label=(t.nav_overview) {
                            ul.nav {
                                @if let Some(u) = c.unit {
                                    li { a href={ "/dashboard/units/" (u) } { (t.nav_overview) } }
                                    @if c.role == Role::Admin {
                                        li { a href={ "/dashboard/units/" (u) "/activity" } { (t.nav_activity) } }
                                        li { a href={ "/dashboard/units/" (u) "/conflicts" } { (t.nav_conflicts) } }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (t.signed_in_as) " " strong { (c.username) } }
                            form method="post" action="/dashboard/logout" {
                                input type="hidden" name="csrf" value=(c.csrf);
                                button type="submit" { (t.log_out) }
                            }
                        }
                    }
                    (lang_switch(lang, chrome.map_or("/dashboard/login", |c| c.here)))
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

fn lang_switch(lang: Lang, here: &str) -> Markup {
    let t = lang.t();
    html! {
        nav.lang aria-label=(t.language) {
            a href={ (here) "?lang=vi" } lang="vi" aria-current=[(lang == Lang::Vi).then_some("true")] { "Tiếng Việt" }
            " · "
            a href={ (here) "?lang=en" } lang="en" aria-current=[(lang == Lang::En).then_some("true")] { "English" }
        }
    }
}

pub fn login(lang: Lang, csrf: &str, username: &str, error: Option<String>) -> Markup {
    let t = lang.t();
    layout(
        lang,
        t.login_title,
        None,
        html! {
            section.card.login {
                h1 { (t.login_title) }
                @if let Some(e) = error {
                    p.error role="alert" id="login-error" { (e) }
                }
                form method="post" action="/dashboard/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field {
                        label for="username" { (t.username) }
                        input id="username" name="username" type="text" autocomplete="username" required value=(username);
                    }
                    div.field {
                        label for="password" { (t.password) }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                    }
                    button type="submit" id="login-submit" { (t.log_in) }
                }
            }
        },
    )
}

/// A horizontal bar of `ratio` with the target drawn as a dashed line.
pub fn bar(t: &Strings, lang: Lang, ratio: Option<f64>, target: Option<f64>) -> Markup {
    const W: f64 = 160.0;
    let label = match (ratio, target) {
        (Some(r), Some(g)) => format!("{} / {} {}", percent(lang, r), t.target, percent(lang, g)),
        (Some(r), None) => percent(lang, r),
        (None, _) => t.no_data.to_owned(),
    };
    let (fill, class) = match (ratio, target) {
        (Some(r), Some(g)) if r < g => ("#b45309", "bar behind"),
        (Some(_), _) => ("#15803d", "bar"),
        _ => ("#9ca3af", "bar"),
    };
    html! {
        svg class=(class) width="160" height="18" viewBox="0 0 160 18" role="img" aria-label=(label) {
            title { (label) }
            rect x="0" y="3" width="160" height="12" rx="2" fill="#e5e7eb" {}
            @if let Some(r) = ratio {
                rect x="0" y="3" width=(format!("{:.1}", r.clamp(0.0, 1.0) * W)) height="12" rx="2" fill=(fill) {}
            }
            @if let Some(g) = target {
                line.target x1=(format!("{:.1}", g * W)) x2=(format!("{:.1}", g * W)) y1="0" y2="18"
                    stroke="#111827" stroke-width="2" stroke-dasharray="3 2" {}
            }
        }
    }
}

fn ratio_text(t: &Strings, lang: Lang, a: &Aggregate, i: &Indicator) -> Markup {
    html! {
        @if a.suppressed {
            span.suppressed { (t.suppressed) }
        } @else if let Some(r) = i.ratio {
            (percent(lang, r))
        } @else {
            span.muted { "—" }
        }
    }
}

/// The units of a user with several scope units.
pub fn home(chrome: &Chrome<'_>, units: &[(UnitId, String)]) -> Markup {
    let (lang, t) = (chrome.lang, chrome.lang.t());
    layout(
        lang,
        t.nav_overview,
        Some(chrome),
        html! {
            h1 { (t.nav_overview) }
            ul.units {
                @for (id, name) in units {
                    li { a href={ "/dashboard/units/" (id) } { (name) } }
                }
            }
        },
    )
}

pub struct OverviewParams<'a> {
    pub sort: &'a SortKey,
    pub descending: bool,
}

pub fn overview(chrome: &Chrome<'_>, o: &Overview, p: &OverviewParams<'_>) -> Markup {
    let (lang, t) = (chrome.lang, chrome.lang.t());
    let a = &o.own;
    let unit = a.unit.id;
    let sort_href = |key: &str, desc: bool| {
        format!(
            "/dashboard/units/{unit}?sort={key}&dir={}#children",
            if desc { "desc" } else { "asc" }
        )
    };
    layout(
        lang,
        &a.unit.name,
        Some(chrome),
        html! {
            nav.crumbs aria-label=(t.breadcrumb) {
                ol {
                    @for (entry, in_scope) in &o.path {
                        li {
                            @if entry.id == unit {
                                span aria-current="page" { (entry.name) }
                            } @else if *in_scope {
                                a href={ "/dashboard/units/" (entry.id) } { (entry.name) }
                            } @else {
                                span { (entry.name) }
                            }
                        }
                    }
                }
            }
            h1 { (a.unit.name) " " small.level { (t.level(a.unit.level)) } }
            div.stats {
                div.stat { span.k { (t.households) } span.v id="households" { (number(lang, a.households)) } }
                div.stat { span.k { (t.members) } span.v id="members" { (number(lang, a.members)) } }
                div.stat { span.k { (t.as_of) } span.v { (a.as_of) } }
            }
            @if a.suppressed {
                p.note id="suppressed-note" role="note" { (t.suppressed_note) }
            }
            section aria-labelledby="exports-h" {
                h2 id="exports-h" { (t.exports) }
                p.buttons {
                    a.button id="export-csv" href={ "/dashboard/units/" (unit) "/export?format=csv" } download { (t.download_csv) }
                    " "
                    a.button id="export-xlsx" href={ "/dashboard/units/" (unit) "/export?format=xlsx" } download { (t.download_xlsx) }
                }
            }
            section aria-labelledby="indicators-h" {
                h2 id="indicators-h" { (t.indicators) }
                div.scroll {
                    table.indicators id="indicators" {
                        thead { tr {
                            th scope="col" { (t.indicator) }
                            th scope="col" .num { (t.numerator) }
                            th scope="col" .num { (t.denominator) }
                            th scope="col" .num { (t.unknown) }
                            th scope="col" .num { (t.ratio) }
                            th scope="col" { (t.target) }
                        } }
                        tbody {
                            @for i in &a.indicators {
                                @let target = target_of(&i.key);
                                tr data-key=(i.key) {
                                    th scope="row" { (t.indicator(&i.key)) }
                                    td.num { (number(lang, i.numerator)) }
                                    td.num { (number(lang, i.denominator)) }
                                    td.num { (number(lang, i.unknown)) }
                                    td.num.ratio { (ratio_text(t, lang, a, i)) }
                                    td {
                                        @if !a.suppressed { (bar(t, lang, i.ratio, target)) }
                                        @if let Some(g) = target { " " span.targetlabel { (t.target) " " (percent(lang, g)) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section id="children" aria-labelledby="children-h" {
                h2 id="children-h" { (t.children) }
                @if o.children.is_empty() {
                    p { (t.no_children) }
                } @else {
                    form.sortform method="get" action={ "/dashboard/units/" (unit) } {
                        label for="sort" { (t.sort_by) }
                        select id="sort" name="sort" {
                            option value="name" selected[*p.sort == SortKey::Name] { (t.name) }
                            option value="households" selected[*p.sort == SortKey::Households] { (t.households) }
                            option value="members" selected[*p.sort == SortKey::Members] { (t.members) }
                            @for k in INDICATOR_KEYS {
                                option value=(k) selected[p.sort.as_str() == k] { (t.indicator(k)) }
                            }
                        }
                        label for="dir" { span.sr { (t.sort) } }
                        select id="dir" name="dir" {
                            option value="asc" selected[!p.descending] { (t.ascending) }
                            option value="desc" selected[p.descending] { (t.descending) }
                        }
                        button type="submit" id="sort-submit" { (t.sort) }
                        " "
                        a id="furthest-behind" href=(sort_href("population_with_smartphone", false)) { (t.furthest_behind) }
                    }
                    @let sorted_key = match p.sort { SortKey::Indicator(k) => *k, _ => "population_with_smartphone" };
                    div.scroll {
                        table.children id="children-table" {
                            thead { tr {
                                (sort_th(t.name, "name", p, &sort_href))
                                (sort_th(t.households, "households", p, &sort_href))
                                (sort_th(t.members, "members", p, &sort_href))
                                th scope="col" class="barcol" { (t.indicator(sorted_key)) }
                                @for k in INDICATOR_KEYS {
                                    (sort_th(t.indicator(k), k, p, &sort_href))
                                }
                            } }
                            tbody {
                                @for c in &o.children {
                                    tr data-unit=(c.unit.id) {
                                        th scope="row" {
                                            a.child href={ "/dashboard/units/" (c.unit.id) } { (c.unit.name) }
                                        }
                                        td.num { (number(lang, c.households)) }
                                        td.num { (number(lang, c.members)) }
                                        td {
                                            @if !c.suppressed {
                                                @let r = c.indicators.iter().find(|i| i.key == sorted_key).and_then(|i| i.ratio);
                                                (bar(t, lang, r, target_of(sorted_key)))
                                            }
                                        }
                                        @for i in &c.indicators {
                                            td.num data-key=(i.key) { (ratio_text(t, lang, c, i)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn sort_th(label: &str, key: &str, p: &OverviewParams<'_>, href: &dyn Fn(&str, bool) -> String) -> Markup {
    let active = p.sort.as_str() == key;
    // The first click on a column sorts ascending (furthest behind first), the next flips it.
    let next_desc = active && !p.descending;
    let aria = active.then_some(if p.descending { "descending" } else { "ascending" });
    html! {
        th scope="col" aria-sort=[aria] {
            a.sortlink href=(href(key, next_desc)) data-sort=(key) {
                (label)
                @if active { (if p.descending { " ▼" } else { " ▲" }) }
            }
        }
    }
}

pub fn activity(
    chrome: &Chrome<'_>,
    unit_name: &str,
    a: &TeamActivity,
    days: i64,
    done: Option<&str>,
    shown: usize,
) -> Markup {
    let (lang, t) = (chrome.lang, chrome.lang.t());
    let unit = chrome.unit.map(|u| u.to_string()).unwrap_or_default();
    layout(
        lang,
        t.nav_activity,
        Some(chrome),
        html! {
            h1 { (t.nav_activity) ": " (unit_name) }
            @if let Some(d) = done { p.done role="status" { (d) } }
            form.inline method="get" action={ "/dashboard/units/" (unit) "/activity" } {
                label for="days" { (t.stale_days) }
                input id="days" name="days" type="number" min="1" max="365" value=(days);
                button type="submit" { (t.show) }
            }
            section aria-labelledby="stale-h" {
                h2 id="stale-h" { (t.stale_villages) " (" (a.stale_villages.len()) "/" (a.villages_total) ")" }
                p.muted { (t.stale_villages_note) }
                @if a.stale_villages.is_empty() {
                    p { (t.no_stale_villages) }
                } @else {
                    div.scroll { table id="stale-villages" {
                        thead { tr { th scope="col" { (t.village) } th scope="col" { (t.last_sync) } th scope="col" .num { (t.devices) } } }
                        tbody {
                            @for v in a.stale_villages.iter().take(shown) {
                                tr.stale {
                                    th scope="row" { a href={ "/dashboard/units/" (v.village.id) } { (v.village.name) } }
                                    td { @if let Some(s) = v.last_sync_us { (when(s)) } @else { (t.never) } }
                                    td.num { (v.devices) }
                                }
                            }
                        }
                    } }
                    @if a.stale_villages.len() > shown { p.muted { (t.shown_first) " " (shown) } }
                }
            }
            section aria-labelledby="devices-h" {
                h2 id="devices-h" { (t.devices) }
                @if a.devices.is_empty() {
                    p { (t.no_devices) }
                } @else {
                    div.scroll { table id="devices" {
                        thead { tr {
                            th scope="col" { (t.user) } th scope="col" { (t.device) } th scope="col" { (t.villages) }
                            th scope="col" { (t.last_sync) } th scope="col" { (t.last_seen) } th scope="col" { (t.status) }
                        } }
                        tbody {
                            @for d in a.devices.iter().take(shown) {
                                tr class=(if d.stale { "stale" } else { "" }) data-device=(d.device.device_id) {
                                    th scope="row" { (d.device.username) }
                                    td { (d.device.name.as_deref().unwrap_or("—")) br; small.muted { (d.device.device_id) } }
                                    td { (d.scope_names.join(", ")) }
                                    td {
                                        @if let Some(s) = d.last_sync_us { (when(s)) } @else { (t.never) }
                                        @if d.stale { " " span.badge { (t.not_synced_for) } }
                                    }
                                    td { (d.device.last_seen.get(..16).unwrap_or("").replace('T', " ")) " UTC" }
                                    td {
                                        @if d.device.revoked {
                                            span.revoked { (t.revoked) }
                                        } @else {
                                            form method="post" action={ "/dashboard/units/" (unit) "/devices/" (d.device.device_id) "/revoke" } {
                                                input type="hidden" name="csrf" value=(chrome.csrf);
                                                button.danger type="submit" aria-label={ (t.revoke) " " (d.device.username) " " (d.device.device_id) } { (t.revoke) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                    @if a.devices.len() > shown { p.muted { (t.shown_first) " " (shown) } }
                }
            }
        },
    )
}

/// A conflict's value as people read it: text as is, yes/no/unknown translated.
fn value_text(t: &Strings, c: &ConflictInfo, v: &serde_json::Value) -> String {
    let tri = c
        .record_type
        .spec(&c.field)
        .is_some_and(|s| s.kind == hamlet_shared::records::FieldKind::Tri);
    match v {
        serde_json::Value::String(s) if tri => match s.as_str() {
            "yes" => t.tri[0].to_owned(),
            "no" => t.tri[1].to_owned(),
            "unknown" => t.tri[2].to_owned(),
            other => other.to_owned(),
        },
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

pub fn conflicts(
    chrome: &Chrome<'_>,
    unit_name: &str,
    list: &[ConflictInfo],
    villages: &HashMap<UnitId, String>,
    done: Option<&str>,
) -> Markup {
    let (lang, t) = (chrome.lang, chrome.lang.t());
    let unit = chrome.unit.map(|u| u.to_string()).unwrap_or_default();
    layout(
        lang,
        t.nav_conflicts,
        Some(chrome),
        html! {
            h1 { (t.nav_conflicts) ": " (unit_name) }
            @if let Some(d) = done { p.done role="status" { (d) } }
            @if list.is_empty() {
                p id="no-conflicts" { (t.no_conflicts) }
            }
            @for c in list {
                article.conflict id={ "conflict-" (c.id) } data-field=(c.field) aria-labelledby={ "c-" (c.id) } {
                    h2 id={ "c-" (c.id) } {
                        (t.field) ": " (t.field(&c.field).unwrap_or(&c.field)) " (" code { (c.field) } ") · " (t.record) " " (match c.record_type {
                            RecordType::Household => t.record_household,
                            RecordType::Member => t.record_member,
                        })
                    }
                    p.muted {
                        (t.village) ": " (villages.get(&c.village_id).map_or("?", String::as_str))
                        " · " (t.created_at) ": " (c.created_at.get(..16).unwrap_or("").replace('T', " ")) " UTC"
                    }
                    div.sides {
                        div.side {
                            h3 { (t.current_value) }
                            p.value.current { (value_text(t, c, &c.current_value)) }
                            p.muted { small { (c.current_hlc) } }
                            form method="post" action={ "/dashboard/units/" (unit) "/conflicts/" (c.id) "/resolve" } {
                                input type="hidden" name="csrf" value=(chrome.csrf);
                                input type="hidden" name="choose" value="current";
                                button type="submit" class="keep" { (t.keep_current) }
                            }
                        }
                        div.side {
                            h3 { (t.incoming_value) }
                            p.value.incoming { (value_text(t, c, &c.incoming_value)) }
                            p.muted { small { (c.incoming_hlc) } }
                            form method="post" action={ "/dashboard/units/" (unit) "/conflicts/" (c.id) "/resolve" } {
                                input type="hidden" name="csrf" value=(chrome.csrf);
                                input type="hidden" name="choose" value="incoming";
                                button type="submit" class="take" { (t.take_incoming) }
                            }
                        }
                    }
                    (other_value_form(chrome, &unit, c))
                }
            }
        },
    )
}

/// A form to resolve a conflict with a value of the admin's own, with an input fitting the
/// field's kind (none for the fields that place a record: those take current or incoming).
fn other_value_form(chrome: &Chrome<'_>, unit: &str, c: &ConflictInfo) -> Markup {
    use hamlet_shared::records::FieldKind;
    let t = chrome.lang.t();
    let Some(spec) = c.record_type.spec(&c.field) else {
        return html! {};
    };
    let input_id = format!("value-{}", c.id);
    let input = match spec.kind {
        FieldKind::Uuid => return html! {},
        FieldKind::Tri => html! {
            select id=(input_id) name="value" {
                option value="yes" { (t.tri[0]) }
                option value="no" { (t.tri[1]) }
                option value="unknown" { (t.tri[2]) }
            }
        },
        FieldKind::Sex => html! {
            select id=(input_id) name="value" {
                option value="male" { "male" }
                option value="female" { "female" }
                option value="other" { "other" }
            }
        },
        FieldKind::BirthYear => html! {
            input id=(input_id) name="value_number" type="number" min="1900" required;
        },
        FieldKind::Date => html! { input id=(input_id) name="value" type="date" required; },
        FieldKind::Text { max_chars } => html! {
            input id=(input_id) name="value" type="text" maxlength=(max_chars) required;
        },
    };
    html! {
        form.inline.other method="post" action={ "/dashboard/units/" (unit) "/conflicts/" (c.id) "/resolve" } {
            input type="hidden" name="csrf" value=(chrome.csrf);
            input type="hidden" name="choose" value="value";
            label for=(input_id) { (t.other_value) }
            (input)
            button type="submit" class="set" { (t.set_value) }
        }
    }
}

/// An error page: a heading, the message and a way back.
pub fn error(lang: Lang, chrome: Option<&Chrome<'_>>, message: &str) -> Markup {
    let t = lang.t();
    layout(
        lang,
        t.error_title,
        chrome,
        html! {
            section.card {
                h1 { (t.error_title) }
                p.error id="error-message" role="alert" { (message) }
                p { a href="/dashboard" { (t.back_to_overview) } }
            }
        },
    )
}

/// The stylesheet, compiled into the binary.
pub const STYLE: &str = include_str!("style.css");
