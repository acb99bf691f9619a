//! `update` for reports, codes, grants and the ledger (DESIGN.md §5, §6): still the only
//! writer of state; the work runs as `Effect::Vault` jobs on tasks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use uuid::Uuid;

use super::{is, move_down, type_into};
use crate::api::Role;
use crate::tui::action::{Done, Effect, Fail, Job, Titled, VaultCtx};
use crate::tui::keymap::Cmd;
use crate::tui::state::{
    App, Check, GrantsView, HeadInfo, Pane, PathEntry, PathFor, Pending, PickFor, Popup, ReportRow,
    Transfer, TransferKind, UploadPicker, field_text, text_field,
};

/// What report work needs, or `None` (with the reason in the status bar) when it must not run:
/// no keys, or a ledger check failed (the red banner blocks every report action).
fn ctx(app: &mut App) -> Option<VaultCtx> {
    if let Some(why) = &app.ledger.failed {
        app.status.error = Some(format!("Blocked: the ledger check failed ({why})"));
        return None;
    }
    let s = app.session.as_ref()?;
    let Some(me) = s.keys.clone() else {
        app.status.error = Some("No keys in this session: log in again.".into());
        return None;
    };
    Some(VaultCtx {
        client: s.client.clone(),
        me,
        settings: app.report_settings.clone(),
        lock: app.ledger_lock.clone(),
    })
}

/// Queues a report job (counted as in flight).
pub(super) fn vault(app: &mut App, fx: &mut Vec<Effect>, job: Job) {
    let Some(ctx) = ctx(app) else { return };
    if job.needs_ledger() {
        app.ledger.syncing = true;
    }
    app.status.busy += 1;
    fx.push(Effect::Vault {
        epoch: app.epoch,
        ctx,
        job,
    });
}

pub(super) fn load_reports(app: &mut App, fx: &mut Vec<Effect>) {
    if app.ledger.failed.is_some() {
        return;
    }
    app.reports.request_id += 1;
    app.reports.loading = true;
    let id = app.reports.request_id;
    let patient = app.reports.patient.as_ref().map(|p| p.0);
    vault(app, fx, Job::List { id, patient });
}

pub(super) fn load_otp(app: &mut App, fx: &mut Vec<Effect>) {
    app.otp.request_id += 1;
    app.otp.loading = true;
    let id = app.otp.request_id;
    vault(app, fx, Job::OtpList { id });
}

pub(super) fn load_entries(app: &mut App, fx: &mut Vec<Effect>) {
    if app.ledger.failed.is_some() {
        return;
    }
    app.ledger.entries_loading = true;
    vault(app, fx, Job::Entries);
}

fn selected_row(app: &App) -> Option<ReportRow> {
    app.reports.selected_row(app.tz).cloned()
}

fn row_mut(app: &mut App, id: Uuid) -> Option<&mut ReportRow> {
    app.reports.rows.iter_mut().find(|r| r.summary.id == id)
}

fn me(app: &App) -> Option<Uuid> {
    app.session.as_ref().map(|s| s.user.id)
}

/// A file name from a title the user never typed: letters, digits, `.-_`, nothing else.
pub fn safe_name(title: &str, id: Uuid) -> String {
    crate::text::safe_file_name(title, &format!("report-{}", &id.simple().to_string()[..8]))
}

pub(super) fn report_command(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) {
    let role = app.role();
    match cmd {
        Cmd::EnterCode => {
            if app.pane != Pane::Otp {
                return;
            }
            if app.otp.items.is_empty() {
                app.status.info = Some("No code is waiting.".into());
            } else {
                app.otp.editing = true;
            }
        }
        // Reception has no codes of its own: it mails a patient's again, by request id.
        Cmd::Resend if role == Some(Role::Reception) => {
            app.popup = Some(Popup::Path(Box::new(PathEntry {
                purpose: PathFor::ResendCode,
                input: text_field("request id from the patient's mail"),
            })));
        }
        Cmd::Resend => {
            if app.pane != Pane::Otp {
                app.status.info = Some("Codes are in the OTP pane: R there.".into());
                return;
            }
            if let Some(p) = app.otp.items.get(app.otp.selected) {
                let request = p.request_id;
                vault(app, fx, Job::OtpResend(request));
            }
        }
        Cmd::Trail if app.panes().contains(&Pane::Ledger) => {
            // From Reports: the selected report's trail only; elsewhere every entry about you.
            app.ledger.trail = if app.pane == Pane::Reports {
                selected_row(app).map(|r| {
                    let title = r.check.title().map(str::to_string).unwrap_or_else(|| {
                        format!("report {}", crate::units::short_id(&r.summary.id))
                    });
                    (r.summary.id, title)
                })
            } else {
                None
            };
            app.ledger.selected = 0;
            app.status.error = None;
            app.pane = Pane::Ledger;
            load_entries(app, fx);
        }
        Cmd::PatientReports => {
            if app.pane != Pane::Reports {
                return;
            }
            if role != Some(Role::Doctor) {
                app.status.error = Some("Only doctors list a patient's reports.".into());
            } else if app.reports.patient.take().is_some() {
                app.reports.rows.clear();
                load_reports(app, fx);
            } else if ctx(app).is_some() {
                app.popup = Some(Popup::PickUploadPatient(Box::new(UploadPicker {
                    purpose: PickFor::Filter,
                    loading: true,
                    error: None,
                    items: vec![],
                    selected: 0,
                })));
                vault(app, fx, Job::Patients);
            }
        }
        Cmd::Upload => {
            if app.pane != Pane::Reports {
                return;
            }
            if role != Some(Role::Doctor) {
                app.status.error = Some("Only doctors upload reports.".into());
            } else if app.transfer.is_some() {
                app.status.error = Some("A transfer is running: one at a time.".into());
            } else if ctx(app).is_some() {
                app.popup = Some(Popup::PickUploadPatient(Box::new(UploadPicker {
                    purpose: PickFor::Upload,
                    loading: true,
                    error: None,
                    items: vec![],
                    selected: 0,
                })));
                vault(app, fx, Job::Patients);
            }
        }
        Cmd::Download | Cmd::Verify | Cmd::Open | Cmd::Export | Cmd::AskConsent | Cmd::Grants => {
            if app.pane != Pane::Reports {
                return;
            }
            let Some(row) = selected_row(app) else {
                app.status.info = Some("No report selected.".into());
                return;
            };
            let id = row.summary.id;
            match cmd {
                Cmd::Verify | Cmd::Download | Cmd::Open | Cmd::Export
                    if row.summary.status == "open" =>
                {
                    app.status.error = Some(
                        "This upload stopped before it was committed: upload the same file again."
                            .into(),
                    )
                }
                Cmd::Verify | Cmd::Download | Cmd::Open | Cmd::Export if !row.summary.readable => {
                    app.status.error = Some(if row.summary.status == "awaiting_release" {
                        "This report waits for the patient's code.".into()
                    } else {
                        "You have no key for this report: ask consent first.".into()
                    })
                }
                Cmd::Verify => vault(app, fx, Job::Verify(id)),
                // Issue 16: the patient's or the author's decision to disclose the key.
                Cmd::Export => {
                    if role != Some(Role::Patient) && Some(row.summary.author_id) != me(app) {
                        app.status.error =
                            Some("Only the report's patient or its author may export it.".into());
                    } else {
                        let title =
                            row.check.title().map(str::to_string).unwrap_or_else(|| {
                                format!("report {}", crate::units::short_id(&id))
                            });
                        app.popup = Some(Popup::Confirm(Pending::Export { report: id, title }));
                    }
                }
                Cmd::Open => {
                    app.status.info = Some("Reading and checking the report…".into());
                    vault(app, fx, Job::Read(id));
                }
                Cmd::Download => {
                    if app.transfer.is_some() {
                        app.status.error = Some("A transfer is running: one at a time.".into());
                        return;
                    }
                    let mut name = safe_name(row.check.title().unwrap_or(""), id);
                    // The file's own extension, from its metadata, unless the title has it.
                    if let Some(ext) = app.reports.exts.get(&id).filter(|e| !e.is_empty())
                        && !name.to_ascii_lowercase().ends_with(&format!(".{ext}"))
                    {
                        name = format!("{name}.{ext}");
                    }
                    let default = app.report_settings.download_dir.join(name);
                    let mut input = text_field("where to save it");
                    input.insert_str(default.to_string_lossy());
                    app.popup = Some(Popup::Path(Box::new(PathEntry {
                        purpose: PathFor::Download { report: id },
                        input,
                    })));
                }
                Cmd::AskConsent => {
                    if role != Some(Role::Doctor) {
                        app.status.error = Some("Only doctors ask for consent.".into());
                    } else if Some(row.summary.author_id) == me(app) || row.summary.readable {
                        app.status.info = Some("You already hold this report's key.".into());
                    } else {
                        app.popup = Some(Popup::Confirm(Pending::AskConsent {
                            report: id,
                            patient: row.summary.patient_name.clone(),
                            author: row.summary.author_name.clone(),
                        }));
                    }
                }
                _ => {
                    app.popup = Some(Popup::Grants(Box::new(GrantsView {
                        report: id,
                        loading: true,
                        error: None,
                        items: vec![],
                        selected: 0,
                    })));
                    vault(app, fx, Job::Grants(id));
                }
            }
        }
        _ => {}
    }
}

/// After the export's confirmation: where to write the bundle.
pub(super) fn ask_export_path(app: &mut App, report: Uuid, title: &str) {
    let name = format!("{}.cvb", safe_name(title, report));
    let default = app.report_settings.download_dir.join(name);
    let mut input = text_field("where to write the bundle");
    input.insert_str(default.to_string_lossy());
    app.popup = Some(Popup::Path(Box::new(PathEntry {
        purpose: PathFor::Export { report },
        input,
    })));
}

/// Typing a code: digits only, six at most; Enter sends it.
pub(super) fn code_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    if is(&k, KeyCode::Esc) {
        app.otp.editing = false;
    } else if is(&k, KeyCode::Enter) {
        let code = field_text(&app.otp.code);
        let Some(p) = app.otp.items.get(app.otp.selected) else {
            app.otp.editing = false;
            app.dirty = true;
            return;
        };
        if code.len() != 6 {
            app.status.error = Some("A code is 6 digits.".into());
        } else {
            let request = p.request_id;
            app.otp.code = text_field("6 digits from the mail");
            app.otp.editing = false;
            vault(app, fx, Job::OtpVerify { request, code });
        }
    } else if let KeyCode::Char(c) = k.code
        && (!c.is_ascii_digit() || field_text(&app.otp.code).len() >= 6)
    {
        return;
    } else if !type_into(&mut app.otp.code, k) {
        return;
    }
    app.dirty = true;
}

pub(super) fn upload_picker_key(
    app: &mut App,
    mut p: Box<UploadPicker>,
    k: KeyEvent,
    fx: &mut Vec<Effect>,
) {
    if is(&k, KeyCode::Esc) {
        return;
    }
    if is(&k, KeyCode::Enter) && p.purpose == PickFor::Filter {
        if let Some(pat) = p.items.get(p.selected) {
            app.reports.patient = Some((pat.id, pat.name.clone()));
            app.reports.rows.clear();
            app.reports.selected = 0;
            load_reports(app, fx);
        } else {
            app.popup = Some(Popup::PickUploadPatient(p));
        }
        return;
    }
    if is(&k, KeyCode::Enter) {
        if let Some(pat) = p.items.get(p.selected) {
            app.popup = Some(Popup::Path(Box::new(PathEntry {
                purpose: PathFor::Upload {
                    patient: pat.id,
                    name: pat.name.clone(),
                },
                input: text_field("path of the file to upload"),
            })));
        } else {
            app.popup = Some(Popup::PickUploadPatient(p));
        }
        return;
    }
    if is(&k, KeyCode::Up) || is(&k, KeyCode::Char('k')) {
        p.selected = p.selected.saturating_sub(1);
    } else if is(&k, KeyCode::Down) || is(&k, KeyCode::Char('j')) {
        move_down(&mut p.selected, p.items.len(), 1);
    }
    app.popup = Some(Popup::PickUploadPatient(p));
}

pub(super) fn path_key(app: &mut App, mut p: Box<PathEntry>, k: KeyEvent, fx: &mut Vec<Effect>) {
    if is(&k, KeyCode::Esc) {
        return;
    }
    let is_path = !matches!(p.purpose, PathFor::ResendCode | PathFor::UploadTitle { .. });
    if is(&k, KeyCode::Tab) && is_path {
        if let Some(done) = super::complete_path(&field_text(&p.input)) {
            p.input = text_field("");
            p.input.insert_str(done);
        }
        app.popup = Some(Popup::Path(p));
        return;
    }
    if !is(&k, KeyCode::Enter) {
        type_into(&mut p.input, k);
        app.popup = Some(Popup::Path(p));
        return;
    }
    let text = field_text(&p.input).trim().to_string();
    if let PathFor::UploadTitle {
        patient,
        name,
        path,
    } = p.purpose.clone()
    {
        return start_upload(app, patient, name, path, text, fx);
    }
    if text.is_empty() {
        app.popup = Some(Popup::Path(p));
        return;
    }
    if p.purpose == PathFor::ResendCode {
        // The mail may show it with a prefix or quotes: take the first id-shaped word.
        let id = text
            .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
            .find_map(|w| Uuid::parse_str(w).ok());
        match id {
            Some(id) => vault(app, fx, Job::OtpResend(id)),
            None => {
                app.status.error =
                    Some("That is not a request id (it looks like 1b4e28ba-2fa1-…).".into());
                app.popup = Some(Popup::Path(p));
            }
        }
        return;
    }
    let path = expand_home(&text);
    if let PathFor::Export { report } = p.purpose {
        if path.exists() {
            app.status.error = Some(format!(
                "{} exists: choose another name (nothing is overwritten)",
                path.display()
            ));
            app.popup = Some(Popup::Path(p));
            return;
        }
        app.status.error = None;
        app.status.info = Some("Checking the report and writing its bundle…".into());
        return vault(app, fx, Job::Export { report, path });
    }
    let cancel = Arc::new(AtomicBool::new(false));
    app.transfer_seq += 1;
    let id = app.transfer_seq;
    let (kind, label, job) = match p.purpose.clone() {
        PathFor::Upload { patient, name } => {
            if !path.is_file() {
                app.status.error = Some(format!("{}: no such file", path.display()));
                app.popup = Some(Popup::Path(p));
                return;
            }
            // Then its title, the file name without its extension offered.
            let stem = path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut input = text_field("title");
            input.insert_str(stem);
            app.status.error = None;
            app.popup = Some(Popup::Path(Box::new(PathEntry {
                purpose: PathFor::UploadTitle {
                    patient,
                    name,
                    path,
                },
                input,
            })));
            return;
        }
        PathFor::ResendCode | PathFor::UploadTitle { .. } | PathFor::Export { .. } => return,
        PathFor::Download { report } => {
            if path.exists() {
                app.status.error = Some(format!(
                    "{} exists: choose another name (nothing is overwritten)",
                    path.display()
                ));
                app.popup = Some(Popup::Path(p));
                return;
            }
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                TransferKind::Download,
                file,
                Job::Download {
                    report,
                    path,
                    transfer: id,
                    cancel: cancel.clone(),
                },
            )
        }
    };
    app.transfer = Some(Transfer {
        id,
        kind,
        label,
        done: 0,
        total: 0,
        started: app.clock.now,
        cancel,
        meter: Default::default(),
    });
    app.status.error = None;
    vault(app, fx, job);
    if app.ledger.failed.is_some() {
        app.transfer = None;
    }
}

/// Starts an upload once its title is known (an empty title: the file name's stem).
fn start_upload(
    app: &mut App,
    patient: Uuid,
    name: String,
    path: PathBuf,
    title: String,
    fx: &mut Vec<Effect>,
) {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = if title.is_empty() {
        path.file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into())
    } else {
        title
    };
    let cancel = Arc::new(AtomicBool::new(false));
    app.transfer_seq += 1;
    let id = app.transfer_seq;
    app.transfer = Some(Transfer {
        id,
        kind: TransferKind::Upload,
        label: format!("{file} → {name}"),
        done: 0,
        total: 0,
        started: app.clock.now,
        cancel: cancel.clone(),
        meter: Default::default(),
    });
    app.status.error = None;
    app.reports.uploading = Some((patient, file.clone()));
    vault(
        app,
        fx,
        Job::Upload {
            patient,
            path,
            title,
            transfer: id,
            cancel,
        },
    );
    if app.ledger.failed.is_some() {
        app.transfer = None;
    }
}

pub(super) fn expand_home(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(text),
    }
}

pub(super) fn grants_key(app: &mut App, mut g: Box<GrantsView>, k: KeyEvent, fx: &mut Vec<Effect>) {
    if is(&k, KeyCode::Esc) {
        return;
    }
    let me = me(app);
    let sel = g.items.get(g.selected).cloned();
    if is(&k, KeyCode::Up) || is(&k, KeyCode::Char('k')) {
        g.selected = g.selected.saturating_sub(1);
    } else if is(&k, KeyCode::Down) || is(&k, KeyCode::Char('j')) {
        move_down(&mut g.selected, g.items.len(), 1);
    } else if let Some(grant) = sel {
        let patient = Some(grant.patient_id) == me;
        let author = Some(grant.author_id) == me;
        if is(&k, KeyCode::Enter) || is(&k, KeyCode::Char('w')) {
            if grant.status == "approved" && (patient || author) {
                vault(app, fx, Job::CheckWrap(grant.id));
                return;
            }
            app.status.info = Some(format!(
                "Grant is {}: only an approved grant gets its key wrapped.",
                grant.status
            ));
        } else if is(&k, KeyCode::Char('a')) {
            if patient && grant.status == "requested" {
                app.popup = Some(Popup::Confirm(Pending::Approve(Box::new(grant))));
                return;
            }
            app.status.info = Some("Only the patient approves a requested grant.".into());
        } else if is(&k, KeyCode::Char('x')) {
            if patient && matches!(grant.status.as_str(), "requested" | "approved" | "wrapped") {
                app.popup = Some(Popup::Confirm(Pending::Revoke(Box::new(grant))));
                return;
            }
            app.status.info = Some("Only the patient revokes a live grant.".into());
        }
    }
    app.popup = Some(Popup::Grants(g));
}

fn set_head(app: &mut App, h: HeadInfo) {
    app.ledger.head = Some(h);
}

/// A report job's answer.
pub(super) fn on_vault(
    app: &mut App,
    ledger: Option<Result<HeadInfo, String>>,
    done: Option<Done>,
    fx: &mut Vec<Effect>,
) {
    match ledger {
        Some(Ok(h)) => {
            app.ledger.syncing = false;
            set_head(app, h);
        }
        Some(Err(why)) => ledger_failed(app, why),
        None => {}
    }
    let Some(done) = done else {
        app.reports.loading = false;
        app.ledger.entries_loading = false;
        app.ledger.syncing = false;
        return;
    };
    match done {
        Done::Synced => {}
        Done::Emergency(d) => super::emergency::on_done(app, d),
        Done::Listed { id, result } => {
            if id != app.reports.request_id {
                return;
            }
            app.reports.loading = false;
            match result {
                Ok(list) => {
                    let old = std::mem::take(&mut app.reports.rows);
                    let mut rows: Vec<ReportRow> = list
                        .into_iter()
                        .map(|summary| {
                            let check = old
                                .iter()
                                .find(|r| r.summary.id == summary.id)
                                .map(|r| r.check.clone())
                                .unwrap_or(Check::Unchecked);
                            ReportRow { summary, check }
                        })
                        .collect();
                    rows.sort_by_key(|r| std::cmp::Reverse(r.summary.created_at));
                    app.reports.rows = rows;
                    app.reports.error = None;
                    let n = app.reports.rows.len();
                    app.reports.selected = app.reports.selected.min(n.saturating_sub(1));
                    let to_open: Vec<Uuid> = app
                        .reports
                        .rows
                        .iter()
                        .filter(|r| {
                            r.summary.readable
                                && r.summary.status != "open"
                                && r.check == Check::Unchecked
                        })
                        .map(|r| r.summary.id)
                        .collect();
                    if !to_open.is_empty() {
                        vault(app, fx, Job::Open(to_open));
                    }
                }
                Err(f) => fail(app, f, |app, m| app.reports.error = Some(m)),
            }
        }
        Done::Opened(list) => {
            for (id, r) in list {
                match r {
                    Ok(Titled { title, ext, origin }) => {
                        app.reports.exts.insert(id, ext);
                        app.reports.origins.extend(origin.map(|o| (id, o)));
                        if let Some(row) = row_mut(app, id)
                            && !matches!(row.check, Check::Verified { .. })
                        {
                            row.check = Check::Opened { title };
                        }
                    }
                    Err(f) => row_failed(app, id, f),
                }
            }
        }
        Done::Verified { report, result } => match result {
            Ok(Titled { title, ext, origin }) => {
                app.reports.exts.insert(report, ext);
                app.reports.origins.extend(origin.map(|o| (report, o)));
                if let Some(row) = row_mut(app, report) {
                    row.check = Check::Verified { title };
                }
                ok_info(
                    app,
                    "Verified ✓: signature, ledger entries, key and every chunk check out.".into(),
                );
            }
            Err(f) => row_failed(app, report, f),
        },
        Done::Read { report, result } => match result {
            Ok(v) => {
                app.reports
                    .origins
                    .extend(v.origin.clone().map(|o| (report, o)));
                if let Some(row) = row_mut(app, report) {
                    row.check = Check::Verified {
                        title: v.title.clone(),
                    };
                }
                app.status.info = None;
                // Only over the list it was asked from; otherwise it is dropped (and wiped).
                if app.screen == crate::tui::state::Screen::Main
                    && app.pane == Pane::Reports
                    && app.popup.is_none()
                {
                    app.popup = Some(Popup::Viewer(v));
                }
            }
            Err(f) => row_failed(app, report, f),
        },
        Done::Downloaded {
            report,
            transfer,
            path,
            result,
        } => {
            end_transfer(app, transfer);
            match result {
                Ok(Titled { title, ext, origin }) => {
                    app.reports.exts.insert(report, ext);
                    app.reports.origins.extend(origin.map(|o| (report, o)));
                    if let Some(row) = row_mut(app, report) {
                        row.check = Check::Verified { title };
                    }
                    ok_info(app, format!("Saved and verified ✓: {}", path.display()));
                }
                Err(Fail::Other(m)) if m == "cancelled" => {
                    ok_info(app, "Download stopped: nothing was written.".into())
                }
                Err(f) => row_failed(app, report, f),
            }
        }
        Done::Uploaded { transfer, result } => {
            end_transfer(app, transfer);
            let upload = app.reports.uploading.take();
            match (&result, &upload) {
                (Ok(_), Some((patient, _))) => {
                    app.reports.stopped.remove(patient);
                }
                (Err(_), Some((patient, file))) => {
                    app.reports.stopped.insert(*patient, file.clone());
                }
                _ => {}
            }
            let file = upload.map(|u| u.1).unwrap_or_default();
            match result {
                Ok((_, awaiting)) => {
                    ok_info(
                        app,
                        if awaiting {
                            "Uploaded ✓: the patient got a code by mail to release it.".into()
                        } else {
                            "Uploaded ✓".into()
                        },
                    );
                    load_reports(app, fx);
                }
                Err(Fail::Other(m)) if m == "cancelled" => {
                    ok_info(
                        app,
                        format!("Upload of {file} stopped: upload the same file again to resume."),
                    );
                    load_reports(app, fx);
                }
                Err(f) => fail(app, f, |app, m| app.status.error = Some(m)),
            }
        }
        Done::Patients(r) => {
            if let Some(Popup::PickUploadPatient(p)) = &mut app.popup {
                p.loading = false;
                match r {
                    Ok(items) => {
                        p.items = items;
                        if p.items.is_empty() {
                            p.error = Some("No patient has had a visit with you yet.".into());
                        }
                    }
                    Err(f) => p.error = Some(f.text().to_string()),
                }
            }
        }
        Done::Exported { path, result, .. } => match result {
            Ok(()) => ok_info(
                app,
                format!(
                    "Bundle written ✓ (it holds the report key): {}",
                    path.display()
                ),
            ),
            Err(f) => fail(app, f, |app, m| app.status.error = Some(m)),
        },
        Done::ConsentAsked(r) => match r {
            Ok(g) => {
                app.reports.consent_asked.insert(g.report_id);
                ok_info(
                    app,
                    "Consent asked: the patient approves in their client or with a mailed code."
                        .into(),
                )
            }
            Err(f) => fail(app, f, |app, m| app.status.error = Some(m)),
        },
        Done::Grants { report, result } => {
            if let Some(Popup::Grants(g)) = &mut app.popup
                && g.report == report
            {
                g.loading = false;
                match result {
                    Ok(items) => g.items = items,
                    Err(f) => g.error = Some(f.text().to_string()),
                }
            }
        }
        Done::WrapChecked(r) => match r {
            Ok(check) => app.popup = Some(Popup::Wrap(check)),
            Err(f) => fail(app, f, |app, m| app.status.error = Some(m)),
        },
        Done::GrantChanged { what, result } => match result {
            Ok(g) => {
                ok_info(
                    app,
                    match what {
                        "revoke" => format!(
                            "Grant for {} revoked. A copy already downloaded cannot be recalled.",
                            g.reader_name
                        ),
                        "approve" => {
                            format!("Approved: {} can now read the report.", g.reader_name)
                        }
                        _ => format!("Key wrapped for {}.", g.reader_name),
                    },
                );
                load_reports(app, fx);
            }
            Err(f) => fail(app, f, |app, m| app.status.error = Some(m)),
        },
        Done::Entries(r) => {
            app.ledger.entries_loading = false;
            match r {
                Ok(lines) => {
                    app.ledger.entries = lines;
                    let n = app.ledger.entries.len();
                    app.ledger.selected = app.ledger.selected.min(n.saturating_sub(1));
                }
                Err(f) => fail(app, f, |app, m| app.status.error = Some(m)),
            }
        }
        Done::Otp { id, result } => {
            if id != app.otp.request_id {
                return;
            }
            app.otp.loading = false;
            match result {
                Ok(items) => {
                    app.otp.all = items;
                    app.otp.error = None;
                    app.otp.refilter(app.tz);
                    if app.otp.items.is_empty() {
                        app.otp.editing = false;
                    }
                }
                Err(f) => app.otp.error = Some(f.text().to_string()),
            }
        }
        Done::OtpVerified(r) => {
            match r {
                Ok(v) => {
                    ok_info(
                        app,
                        match v.purpose.as_str() {
                            "release" => "Code accepted ✓: the report is released to you.".into(),
                            _ => "Code accepted ✓: the grant is approved.".into(),
                        },
                    );
                    load_reports(app, fx);
                }
                Err(f) => app.status.error = Some(f.text().to_string()),
            }
            load_otp(app, fx);
        }
        Done::OtpResent(r) => match r {
            Ok(_) => ok_info(app, "The code was mailed again.".into()),
            Err(f) => app.status.error = Some(f.text().to_string()),
        },
    }
}

fn end_transfer(app: &mut App, id: u64) {
    if app.transfer.as_ref().is_some_and(|t| t.id == id) {
        app.transfer = None;
    }
}

fn ledger_failed(app: &mut App, why: String) {
    tracing::warn!("ledger check failed");
    app.ledger.failed = Some(why);
    app.ledger.syncing = false;
    app.ledger.entries_loading = false;
    app.reports.loading = false;
    if let Some(t) = app.transfer.take() {
        t.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A failure: the ledger's goes to the banner, others to `other`.
pub(super) fn fail(app: &mut App, f: Fail, other: impl FnOnce(&mut App, String)) {
    match f {
        Fail::Ledger(m) => ledger_failed(app, m),
        Fail::Check(m) | Fail::Other(m) => other(app, m),
    }
}

/// A report's own check failed: its row turns red with the failing check.
fn row_failed(app: &mut App, id: Uuid, f: Fail) {
    match f {
        Fail::Ledger(m) => ledger_failed(app, m),
        Fail::Check(m) => {
            if let Some(row) = row_mut(app, id) {
                row.check = Check::Failed(m.clone());
            }
            app.status.error = Some(format!("FAILED ✗ {m}"));
        }
        Fail::Other(m) => app.status.error = Some(m),
    }
}

/// Good news: shown, and the last error goes.
fn ok_info(app: &mut App, msg: String) {
    app.status.info = Some(msg);
    app.status.error = None;
}
