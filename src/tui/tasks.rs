//! Effects run here, on tokio tasks; each answers with one action. Errors become text for the
//! status bar, never a panic.

use std::path::Path;

use chrono::{Datelike, Duration as Days, NaiveDate};
use futures::future::join_all;
use tokio::sync::mpsc::UnboundedSender;

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::client::ledger::Ledger;
use crate::client::reports::{
    self, Progress, TransferOptions, UploadOptions, approve_and_wrap, check_grant_for_wrap,
    confirm_wrap, verify_report,
};
use crate::client::{ApiClient, ClientError, LoggedIn};
use crate::ledger::Entry;
use crate::tui::action::{
    Action, Done, Effect, EmDone, EmJob, Fail, Job, Titled, UiResult, VaultCtx,
};
use crate::tui::state::{CalendarData, DoctorRow, HeadInfo, LedgerLine, Mail};

/// Runs `effect` on its own task and sends its answer to `tx`. Login and registration derive
/// their keys (Argon2id) on the blocking pool inside the client library, so the runtime's
/// workers, which also serve an embedded server, stay free.
pub fn spawn(effect: Effect, tx: UnboundedSender<Action>) {
    if let Effect::Vault { epoch, ctx, job } = effect {
        tokio::spawn(async move {
            let a = vault(epoch, ctx, job, Some(tx.clone())).await;
            let _ = tx.send(a);
        });
        return;
    }
    tokio::spawn(async move {
        if let Some(a) = perform(effect).await {
            let _ = tx.send(a);
        }
    });
}

fn ui(e: ClientError) -> String {
    e.to_string()
}

/// Issue 11: the ledger's key for this account must be the one just unsealed.
async fn check_own_key(
    client: &crate::client::ApiClient,
    settings: &crate::tui::state::ReportSettings,
    logged: crate::client::LoggedIn,
) -> Result<crate::client::LoggedIn, ClientError> {
    crate::client::ledger::monitor_self_with(
        client,
        &settings.state_dir,
        settings.ledger_key.as_ref(),
        settings.max_head_age_secs,
        &settings.witnesses,
        &logged,
    )
    .await
    .map(|_| logged)
}

/// The password step asked for a TOTP code (issue 15); an account that must enrol first
/// gets its new secret here, so the screen can show the QR code at once.
async fn totp_start(
    client: crate::client::ApiClient,
    email: String,
    pending: crate::client::totp::PendingLogin,
) -> Action {
    let enrolment = if pending.needs_enrolment() {
        match client.login_enrol(&pending).await {
            Ok(e) => Some(e),
            Err(e) => return Action::LoggedIn(Err(ui(e))),
        }
    } else {
        None
    };
    Action::TotpNeeded(Box::new(crate::tui::action::TotpStart {
        client,
        email,
        pending,
        enrolment,
    }))
}

/// What a finished effect reports. Tests call this directly to drive journeys.
pub async fn perform(effect: Effect) -> Option<Action> {
    match run(effect).await {
        Ok(a) => a,
        // The server ended the session (expired, revoked): the client locks itself.
        Err(why) => Some(Action::SessionEnded(why)),
    }
}

/// `Err(why)` when the server says the session is over.
fn end_or<T>(r: &Result<T, ClientError>) -> Result<(), String> {
    use crate::api::codes;
    match r {
        Err(e)
            if matches!(
                e.code(),
                Some(codes::SESSION_EXPIRED | codes::SESSION_REVOKED | codes::UNAUTHENTICATED)
            ) =>
        {
            Err(e.to_string())
        }
        _ => Ok(()),
    }
}

async fn run(effect: Effect) -> Result<Option<Action>, String> {
    Ok(Some(match effect {
        Effect::Later { after, action } => {
            tokio::time::sleep(after).await;
            *action
        }
        Effect::Login {
            mut client,
            email,
            password,
            settings,
        } => {
            let r = client.login_start(&email, &password).await;
            drop(password);
            if let Err(ClientError::LegacySalt(_)) = &r {
                return Ok(Some(Action::LegacySaltAsked));
            }
            // Issue 11: the ledger's key for this account must be the one just unsealed.
            let r = match r {
                Ok(crate::client::totp::LoginStep::Done(logged)) => {
                    check_own_key(&client, &settings, *logged).await
                }
                Ok(crate::client::totp::LoginStep::Totp(pending)) => {
                    return Ok(Some(totp_start(client, email, pending).await));
                }
                Err(e) => Err(e),
            };
            Action::LoggedIn(r.map(|l| Box::new((client, l))).map_err(ui))
        }
        Effect::TotpEnrol { client } => {
            Action::TotpEnrolStarted(client.totp_enrol().await.map_err(ui))
        }
        Effect::TotpConfirm { client, code } => {
            Action::TotpConfirmed(client.totp_confirm(&code).await.map_err(ui))
        }
        Effect::LoginTotp {
            mut client,
            pending,
            code,
            settings,
        } => {
            let r = client.login_totp(&pending, &code).await;
            drop(code);
            let r = match r {
                Ok(done) => check_own_key(&client, &settings, done.logged)
                    .await
                    .map(|l| Box::new((client, l, done.recovery_codes))),
                Err(e) => Err(e),
            };
            Action::TotpLoggedIn(r.map_err(ui))
        }
        Effect::VerifyEmail { client, email } => {
            Action::CodeMailed(client.verify_email(&email).await.map_err(ui))
        }
        Effect::RegisterPatient {
            client,
            verification,
            code,
            email,
            name,
            phone,
            password,
        } => {
            // Argon2 is CPU work: keep it off the runtime's I/O threads.
            let r = client
                .register_patient(&verification, &code, &email, &name, &phone, &password)
                .await;
            Action::Registered(r.map(|_| email).map_err(ui))
        }
        Effect::Logout { client } => {
            let _ = client.logout().await;
            return Ok(None);
        }
        Effect::Recover {
            mut client,
            email,
            code,
            new,
            settings,
        } => {
            let parsed = crate::client::recovery::RecoveryCode::parse(&code);
            drop(code);
            let r = match parsed {
                Ok(code) => client.recover(&email, &code, &new).await.map_err(ui),
                Err(e) => Err(e.to_string()),
            };
            drop(new);
            // As at login: the ledger's key for this account must be the one just unsealed.
            let r = match r {
                Ok(logged) => crate::client::ledger::monitor_self_with(
                    &client,
                    &settings.state_dir,
                    settings.ledger_key.as_ref(),
                    settings.max_head_age_secs,
                    &settings.witnesses,
                    &logged,
                )
                .await
                .map(|_| logged)
                .map_err(ui),
                Err(e) => Err(e),
            };
            Action::LoggedIn(r.map(|l| Box::new((client, l))))
        }
        Effect::MakeKit { client, password } => {
            let r = client.make_recovery_kit(&password).await;
            drop(password);
            end_or(&r)?;
            Action::KitMade(r.map(|c| c.display()).map_err(|e| e.to_string()))
        }
        Effect::ChangePassword {
            client,
            current,
            new,
        } => {
            let r = client.change_password(&current, &new).await;
            drop((current, new));
            end_or(&r)?;
            Action::PasswordChanged(r.map(|_| ()).map_err(|e| e.to_string()))
        }
        Effect::SearchDoctors {
            client,
            id,
            query,
            today,
        } => {
            let r = search_doctors(&client, &query, today).await;
            end_or(&r)?;
            Action::DoctorsLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::LoadCalendar {
            client,
            id,
            doctor,
            month,
            today,
            with_availability,
        } => {
            let r = load_calendar(&client, doctor, month, today, with_availability).await;
            end_or(&r)?;
            Action::CalendarLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::LoadBookings {
            client,
            id,
            from,
            to,
        } => {
            let r = client
                .bookings(&[("from", from.to_string()), ("to", to.to_string())])
                .await
                .map(|mut l| {
                    l.items.sort_by_key(|b| b.start);
                    l.items
                });
            end_or(&r)?;
            Action::BookingsLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::SearchPatients { client, id, query } => {
            let r = client.patients(&query, 1).await.map(|p| p.items);
            end_or(&r)?;
            Action::PatientsLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::Book { client, request } => {
            let r = client.book(&request).await;
            end_or(&r)?;
            Action::Booked(r.map_err(ui))
        }
        Effect::Transition {
            client,
            booking,
            action,
        } => {
            let r = client.booking_action(booking, action).await;
            end_or(&r)?;
            Action::BookingChanged(r.map_err(ui))
        }
        Effect::Vault { epoch, ctx, job } => vault(epoch, ctx, job, None).await,
        Effect::LoadMailbox { dir } => Action::MailboxLoaded(
            tokio::task::spawn_blocking(move || read_outbox(&dir))
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
        ),
    }))
}

fn end_or_ref(e: &ClientError) -> bool {
    use crate::api::codes;
    matches!(
        e.code(),
        Some(codes::SESSION_EXPIRED | codes::SESSION_REVOKED | codes::UNAUTHENTICATED)
    )
}

pub fn head_info(l: &Ledger) -> HeadInfo {
    let h = l.head();
    HeadInfo {
        tree_size: h.tree_size,
        root: hex::encode(&h.root[..8]),
        time_ms: h.time_ms,
        key: l.key().to_string(),
        pinned_now: l.pinned_now,
        cosigned_by: (!l.policy().witnesses.is_empty()).then(|| l.cosigned_by.clone()),
    }
}

/// Sends a progress action when the whole percentage changes (at most ~100 per transfer),
/// and at least once a second while bytes move, so the rate of a slow link stays fresh.
fn progress_fn(tx: Option<UnboundedSender<Action>>, id: u64) -> impl Fn(Progress) + Sync + Send {
    let last = AtomicU64::new(u64::MAX);
    let started = std::time::Instant::now();
    // Milliseconds since `started` of the last action sent.
    let last_sent = AtomicU64::new(0);
    move |p: Progress| {
        let Some(tx) = &tx else { return };
        let pct = (p.bytes_done.saturating_mul(100))
            .checked_div(p.bytes_total)
            .unwrap_or(100);
        let ms = started.elapsed().as_millis() as u64;
        let due = ms.saturating_sub(last_sent.load(Ordering::Relaxed)) >= 1000;
        if last.swap(pct, Ordering::Relaxed) != pct || due {
            last_sent.store(ms, Ordering::Relaxed);
            let _ = tx.send(Action::TransferProgress {
                id,
                done: p.bytes_done,
                total: p.bytes_total,
            });
        }
    }
}

/// Runs one report job: a ledger sync first (one at a time: it rewrites the saved head), then
/// the job with that verified ledger.
pub async fn vault(
    epoch: u64,
    ctx: VaultCtx,
    job: Job,
    tx: Option<UnboundedSender<Action>>,
) -> Action {
    if !job.needs_ledger() {
        return match plain_job(&ctx, job).await {
            Ok(done) => Action::Vault {
                epoch,
                ledger: None,
                done: Some(done),
            },
            Err(why) => Action::SessionEnded(why),
        };
    }
    let synced = {
        let _one = ctx.lock.lock().await;
        Ledger::sync_with(
            &ctx.client,
            &ctx.settings.state_dir,
            ctx.settings.ledger_key.as_ref(),
            ctx.settings.max_head_age_secs,
            &ctx.settings.witnesses,
        )
        .await
    };
    let mut ledger = match synced {
        Ok(l) => l,
        Err(e) if end_or_ref(&e) => return Action::SessionEnded(e.to_string()),
        Err(e) => {
            return match Fail::from(e) {
                Fail::Ledger(m) => Action::Vault {
                    epoch,
                    ledger: Some(Err(m)),
                    done: None,
                },
                other => Action::Vault {
                    epoch,
                    ledger: None,
                    done: Some(failed_done(job, other)),
                },
            };
        }
    };
    // Issue 15.3: a wrap check that meets a rotation not yet accepted answers with the
    // rotation itself, shown as a popup with its accept step. On the heap: this future sits
    // inside every vault task's (the task stack is small).
    if let Job::CheckWrap(grant) = job {
        return Box::pin(check_wrap(epoch, &ctx, &ledger, grant)).await;
    }
    let done = ledger_job(&ctx, &mut ledger, job, tx).await;
    Action::Vault {
        epoch,
        ledger: Some(Ok(head_info(&ledger))),
        done: Some(done),
    }
}

/// `Job::CheckWrap`, answering a rotation not yet accepted with [`Action::KeyRotated`].
async fn check_wrap(epoch: u64, ctx: &VaultCtx, ledger: &Ledger, grant: Uuid) -> Action {
    let done = match check_grant_for_wrap(&ctx.client, ledger, grant).await {
        Err(ClientError::KeyRotated(text)) => match rotated_reader(&ctx.client, grant).await {
            Some(user) => {
                return Action::KeyRotated {
                    epoch,
                    ledger: Some(Ok(head_info(ledger))),
                    rotated: Box::new(crate::tui::action::RotatedKey { user, grant, text }),
                };
            }
            None => Done::WrapChecked(Err(Fail::from(ClientError::KeyRotated(text)))),
        },
        r => Done::WrapChecked(r.map(Box::new).map_err(Fail::from)),
    };
    Action::Vault {
        epoch,
        ledger: Some(Ok(head_info(ledger))),
        done: Some(done),
    }
}

/// The reader of `grant`: whose keys a failed wrap check met rotated.
async fn rotated_reader(c: &crate::client::ApiClient, grant: Uuid) -> Option<Uuid> {
    let grants = c.grants().await.ok()?;
    grants.iter().find(|g| g.id == grant).map(|g| g.reader_id)
}

/// The answer of a job that could not start (the ledger sync failed on the way).
fn failed_done(job: Job, f: Fail) -> Done {
    match job {
        Job::List { id, .. } => Done::Listed { id, result: Err(f) },
        Job::Download {
            report,
            path,
            transfer,
            ..
        } => Done::Downloaded {
            report,
            transfer,
            path,
            result: Err(f),
        },
        Job::Upload { transfer, .. } => Done::Uploaded {
            transfer,
            result: Err(f),
        },
        Job::Open(ids) => Done::Opened(ids.into_iter().map(|i| (i, Err(f.clone()))).collect()),
        Job::Verify(report) => Done::Verified {
            report,
            result: Err(f),
        },
        Job::Read(report) => Done::Read {
            report,
            result: Err(f),
        },
        Job::Grants(report) => Done::Grants {
            report,
            result: Err(f),
        },
        Job::Entries => Done::Entries(Err(f)),
        Job::CheckWrap(_) | Job::AcceptKey { .. } => Done::WrapChecked(Err(f)),
        Job::AskConsent(_) => Done::ConsentAsked(Err(f)),
        Job::Export { report, path } => Done::Exported {
            report,
            path,
            result: Err(f),
        },
        Job::ConfirmWrap(_) => Done::GrantChanged {
            what: "wrap",
            result: Err(f),
        },
        Job::Approve(_) => Done::GrantChanged {
            what: "approve",
            result: Err(f),
        },
        Job::Revoke(_) => Done::GrantChanged {
            what: "revoke",
            result: Err(f),
        },
        Job::Patients | Job::OtpList { .. } | Job::OtpVerify { .. } | Job::OtpResend(_) => {
            Done::Synced
        }
        Job::Emergency(j) => Done::Emergency(match j {
            EmJob::Open { .. } => EmDone::Opened(Err(f)),
            EmJob::List => EmDone::Listed(Err(f)),
            EmJob::Read { .. } => EmDone::Read(Err(f)),
            EmJob::Veto(_) => EmDone::Vetoed(Err(f)),
        }),
    }
}

/// Jobs without the ledger: codes and the patient list. `Err` when the session is over.
async fn plain_job(ctx: &VaultCtx, job: Job) -> Result<Done, String> {
    let c = &ctx.client;
    fn out<T>(r: Result<T, ClientError>) -> Result<Result<T, Fail>, String> {
        match r {
            Err(e) if end_or_ref(&e) => Err(e.to_string()),
            r => Ok(r.map_err(Fail::from)),
        }
    }
    Ok(match job {
        Job::Patients => Done::Patients(out(c.patients("", 1).await.map(|p| p.items))?),
        Job::OtpList { id } => Done::Otp {
            id,
            result: out(c.otp_pending().await)?,
        },
        Job::OtpVerify { request, code } => {
            Done::OtpVerified(out(c.otp_verify(request, &code).await)?)
        }
        Job::OtpResend(request) => Done::OtpResent(out(c.otp_resend(request).await)?),
        Job::Emergency(EmJob::List) => Done::Emergency(EmDone::Listed(out(c
            .emergencies()
            .await
            .map(|l| l.requests))?)),
        Job::Emergency(EmJob::Veto(id)) => {
            Done::Emergency(EmDone::Vetoed(out(c.emergency_veto(id).await)?))
        }
        _ => Done::Synced,
    })
}

fn titled(r: &reports::VerifiedReport) -> Titled {
    let ext = r
        .meta
        .file_name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("")
        .to_ascii_lowercase();
    Titled {
        title: title_of(r),
        ext,
        origin: r.origin.as_ref().map(ToString::to_string),
    }
}

fn title_of(r: &reports::VerifiedReport) -> String {
    let m = &r.meta;
    let t = if m.title.trim().is_empty() {
        &m.file_name
    } else {
        &m.title
    };
    // Decrypted, but written by someone else: shown escaped.
    crate::text::display(t).chars().take(200).collect()
}

async fn ledger_job(
    ctx: &VaultCtx,
    l: &mut Ledger,
    job: Job,
    tx: Option<UnboundedSender<Action>>,
) -> Done {
    let c = &ctx.client;
    let me = &*ctx.me;
    let transfers = ctx.settings.transfers;
    match job {
        // Not ledger jobs: `vault` sends them to `plain_job`.
        Job::Patients
        | Job::OtpList { .. }
        | Job::OtpVerify { .. }
        | Job::OtpResend(_)
        | Job::Emergency(EmJob::List | EmJob::Veto(_)) => Done::Synced,
        Job::Emergency(EmJob::Open { patient, reason }) => Done::Emergency(EmDone::Opened(
            emergency_open(c, &patient, &reason)
                .await
                .map_err(Fail::from),
        )),
        Job::Emergency(EmJob::Read { request, report }) => Done::Emergency(EmDone::Read(
            emergency_read(c, me, l, request, report)
                .await
                .map_err(Fail::from),
        )),
        Job::List { id, patient } => Done::Listed {
            id,
            result: c
                .reports(patient)
                .await
                .map(|r| r.reports)
                .map_err(Fail::from),
        },
        Job::Open(ids) => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let r = verify_report(c, me, l, id).await;
                let ledger_broke = matches!(r, Err(ClientError::Ledger(_)));
                out.push((id, r.map(|v| titled(&v)).map_err(Fail::from)));
                if ledger_broke {
                    break;
                }
            }
            Done::Opened(out)
        }
        Job::Verify(report) => Done::Verified {
            report,
            result: reports::verify(c, me, l, report, transfers)
                .await
                .map(|v| titled(&v))
                .map_err(Fail::from),
        },
        Job::Read(report) => Done::Read {
            report,
            result: crate::client::read::read(
                c,
                me,
                l,
                report,
                transfers,
                crate::tui::viewer::MAX_TEXT,
                |_| true,
            )
            .await
            .map(|m| {
                let title = title_of(&m.report);
                Box::new(crate::tui::viewer::Viewer::new(title, m))
            })
            .map_err(Fail::from),
        },
        Job::Download {
            report,
            path,
            transfer,
            cancel,
        } => {
            let progress = progress_fn(tx, transfer);
            let opts = TransferOptions {
                transfers,
                cancel: Some(&cancel),
                progress: Some(&progress),
            };
            let result = reports::download(c, me, l, report, &path, &opts)
                .await
                .map(|v| titled(&v))
                .map_err(Fail::from);
            Done::Downloaded {
                report,
                transfer,
                path,
                result,
            }
        }
        Job::Upload {
            patient,
            path,
            title,
            transfer,
            cancel,
        } => {
            let progress = progress_fn(tx, transfer);
            let opts = UploadOptions {
                state_dir: &ctx.settings.state_dir,
                chunk_size: ctx.settings.chunk_size,
                transfers,
                title,
                note: String::new(),
                cancel: Some(cancel),
                progress: Some(&progress),
            };
            let r = reports::upload(c, me, l, patient, &path, &opts).await;
            let r = match r {
                Ok(o) => l
                    .refresh()
                    .await
                    .map(|_| (o.report_id, o.commit.release_request_id.is_some())),
                Err(e) => Err(e),
            };
            Done::Uploaded {
                transfer,
                result: r.map_err(Fail::from),
            }
        }
        Job::Export { report, path } => {
            let r = crate::bundle::export::export(c, me, l, report).await;
            let r = r.and_then(|b| crate::bundle::export::write_new_file(&path, &b.bytes));
            Done::Exported {
                report,
                path,
                result: r.map_err(Fail::from),
            }
        }
        Job::AskConsent(report) => {
            Done::ConsentAsked(c.grant_request(report).await.map_err(Fail::from))
        }
        Job::Grants(report) => Done::Grants {
            report,
            result: c
                .grants()
                .await
                .map(|g| g.into_iter().filter(|g| g.report_id == report).collect())
                .map_err(Fail::from),
        },
        Job::CheckWrap(grant) => Done::WrapChecked(
            check_grant_for_wrap(c, l, grant)
                .await
                .map(Box::new)
                .map_err(Fail::from),
        ),
        Job::AcceptKey { user, grant } => {
            let r = match l.accept_key_change(user).await {
                Ok(_) => Box::pin(check_grant_for_wrap(c, l, grant)).await,
                Err(e) => Err(e),
            };
            Done::WrapChecked(r.map(Box::new).map_err(Fail::from))
        }
        Job::ConfirmWrap(check) => {
            let r = confirm_wrap(c, me, l, &check).await;
            let r = match r {
                Ok(g) => l.refresh().await.map(|_| g),
                Err(e) => Err(e),
            };
            Done::GrantChanged {
                what: "wrap",
                result: r.map_err(Fail::from),
            }
        }
        Job::Approve(grant) => Done::GrantChanged {
            what: "approve",
            result: approve_and_wrap(c, me, l, grant).await.map_err(Fail::from),
        },
        Job::Revoke(grant) => {
            let r = c.grant_revoke(grant).await;
            let r = match r {
                Ok(g) => l.refresh().await.map(|_| g),
                Err(e) => Err(e),
            };
            Done::GrantChanged {
                what: "revoke",
                result: r.map_err(Fail::from),
            }
        }
        Job::Entries => {
            let me_id = me.login.user.id;
            // Issue 16: break-glass rows carry their reason, checked against the entry's hash.
            let reasons = crate::client::emergency::reasons(c).await;
            Done::Entries(
                complete_trail(l, me_id)
                    .await
                    .map(|v| {
                        let mut lines: Vec<LedgerLine> = v
                            .into_iter()
                            .map(|(index, e)| {
                                let (report, grant) = about(&e);
                                LedgerLine {
                                    index,
                                    time_ms: e.time_ms(),
                                    text: match crate::client::emergency::trail_reason(&e, &reasons)
                                    {
                                        Some(why) => format!("{}: {why}", describe(&e, me_id)),
                                        None => describe(&e, me_id),
                                    },
                                    report,
                                    grant,
                                }
                            })
                            .collect();
                        lines.reverse();
                        lines.truncate(100);
                        lines
                    })
                    .map_err(Fail::from),
            )
        }
    }
}

// ---- Issue 16: break-glass ----

/// Resolves the patient as `clinvault emergency open` does (an id reaches any patient; an
/// address only the doctor's own), then breaks the glass.
async fn emergency_open(
    c: &ApiClient,
    patient: &str,
    reason: &str,
) -> Result<crate::api::emergency::EmergencyRequest, ClientError> {
    let who = patient.trim();
    let id = match Uuid::parse_str(who) {
        Ok(id) => id,
        Err(_) if who.contains('@') => {
            let found = c.patients(who, 1).await?;
            let exact: Vec<Uuid> = found
                .items
                .iter()
                .filter(|p| p.email.eq_ignore_ascii_case(who))
                .map(|p| p.id)
                .collect();
            match exact.as_slice() {
                [one] => *one,
                [] => {
                    return Err(ClientError::Refused(format!(
                        "no patient {who} among the patients you have bookings with: type the \
                         patient's id instead"
                    )));
                }
                _ => {
                    return Err(ClientError::Refused(format!(
                        "more than one patient matches {who}: type the patient's id instead"
                    )));
                }
            }
        }
        Err(_) => {
            return Err(ClientError::Refused(
                "type the patient's id or exact email address".into(),
            ));
        }
    };
    c.emergency_open(id, reason).await
}

/// One released report into memory for the viewer: the release's kind-12 entry checked
/// (`released`), then every check of an ordinary read (`read_report`).
async fn emergency_read(
    c: &ApiClient,
    me: &LoggedIn,
    l: &mut Ledger,
    request: Uuid,
    report: Uuid,
) -> Result<Box<crate::tui::viewer::Viewer>, ClientError> {
    let rel = crate::client::emergency::released(c, me, l, request).await?;
    let m =
        crate::client::emergency::read_report(c, me, l, &rel, report, crate::tui::viewer::MAX_TEXT)
            .await?;
    let title = title_of(&m.report);
    Ok(Box::new(crate::tui::viewer::Viewer::new(title, m)))
}

/// How many of the newest entries about the user the Ledger pane shows.
pub const ENTRIES_SHOWN: usize = 100;

/// The newest entries of the user's complete trail (replayed, issue 17); an entry the
/// server's own list left out is a ledger failure.
async fn complete_trail(
    l: &crate::client::ledger::Ledger,
    me: Uuid,
) -> Result<Vec<(u64, Entry)>, crate::client::ClientError> {
    let t = crate::client::trail::complete_trail(l, &l.state_dir(), me).await?;
    if let Some(i) = t.omitted_by_server.first() {
        return Err(crate::client::ClientError::Ledger(format!(
            "the server's list of entries about you left out entry {i} (and {} more)",
            t.omitted_by_server.len() - 1
        )));
    }
    let mut v = t.entries;
    v.drain(..v.len().saturating_sub(ENTRIES_SHOWN));
    Ok(v)
}

fn short(id: &[u8; 16], me: Uuid) -> String {
    let u = Uuid::from_bytes(*id);
    if u == me {
        "you".into()
    } else {
        u.simple().to_string()[..8].to_string()
    }
}

/// The report and the grant an entry names, for one report's trail.
fn about(e: &Entry) -> (Option<Uuid>, Option<Uuid>) {
    let id = |b: &[u8; 16]| Some(Uuid::from_bytes(*b));
    // Every report's commit-time wraps share the nil grant id: it ties no entries together.
    let grant = |b: &[u8; 16]| id(b).filter(|g| !g.is_nil());
    match e {
        Entry::ReportCommitted { report_id, .. } | Entry::ReportAccess { report_id, .. } => {
            (id(report_id), None)
        }
        Entry::GrantApproved {
            report_id,
            grant_id,
            ..
        }
        | Entry::KeyWrapped {
            report_id,
            grant_id,
            ..
        } => (id(report_id), grant(grant_id)),
        Entry::GrantRevoked { grant_id, .. } => (None, grant(grant_id)),
        _ => (None, None),
    }
}

/// One line for a ledger entry, ids shortened, the caller named "you".
pub fn describe(e: &Entry, me: Uuid) -> String {
    match e {
        Entry::UserRegistered { user_id, role, .. } => {
            format!(
                "keys registered: {} ({})",
                short(user_id, me),
                format!("{role:?}").to_lowercase()
            )
        }
        Entry::ReportCommitted { report_id, .. } => {
            format!("report {} committed", short(report_id, me))
        }
        Entry::GrantApproved {
            report_id,
            reader_id,
            how,
            ..
        } => format!(
            "grant approved {}: report {} for {}",
            match how {
                crate::ledger::GrantHow::Otp => "by code",
                crate::ledger::GrantHow::SignedByPatient => "signed by the patient",
            },
            short(report_id, me),
            short(reader_id, me)
        ),
        Entry::KeyWrapped {
            report_id,
            reader_id,
            wrapper_id,
            ..
        } => format!(
            "key of report {} wrapped to {} by {}",
            short(report_id, me),
            short(reader_id, me),
            short(wrapper_id, me)
        ),
        Entry::GrantRevoked { grant_id, .. } => format!("grant {} revoked", short(grant_id, me)),
        Entry::ReportAccess {
            report_id,
            reader_id,
            what,
            ..
        } => match what {
            crate::ledger::AccessWhat::ReleasedByOtp => format!(
                "report {} released by code to {}",
                short(report_id, me),
                short(reader_id, me)
            ),
            crate::ledger::AccessWhat::KeyServed => format!(
                "report {}: key served to {}",
                short(report_id, me),
                short(reader_id, me)
            ),
        },
        Entry::OtpVerified { user_id, .. } => format!("code entered by {}", short(user_id, me)),
        Entry::AccountStatus { user_id, state, .. } => {
            format!("account {} {}", short(user_id, me), account_state(*state))
        }
        Entry::StationOrder {
            station_id,
            patient_id,
            doctor_id,
            ..
        } => format!(
            "upload order: station {} for {} by {}",
            short(station_id, me),
            short(patient_id, me),
            short(doctor_id, me)
        ),
        Entry::EmergencyTeam { .. } | Entry::EmergencyAccess { .. } => describe_emergency(e, me),
        Entry::KeyRotated { .. } => {
            crate::client::trail::shared_words(e, &|id| short(id, me)).unwrap_or_default()
        }
    }
}

/// Issue 16: kinds 11 and 12. The Ledger pane shows kind-12 rows in red ([`BREAK_GLASS`]).
fn describe_emergency(e: &Entry, me: Uuid) -> String {
    match e {
        Entry::EmergencyTeam { .. } => {
            crate::client::trail::shared_words(e, &|id| short(id, me)).unwrap_or_default()
        }
        Entry::EmergencyAccess {
            patient_id,
            reader_id,
            ..
        } => format!(
            "{BREAK_GLASS} {} → {}",
            short(reader_id, me),
            short(patient_id, me)
        ),
        _ => String::new(),
    }
}

/// How a kind-12 row's text begins; the Ledger pane draws such rows in red.
pub const BREAK_GLASS: &str = "BREAK-GLASS:";

fn account_state(s: crate::ledger::AccountState) -> &'static str {
    match s {
        crate::ledger::AccountState::Deactivated => "deactivated",
        crate::ledger::AccountState::Reactivated => "reactivated",
    }
}

/// Name and specialty both match as you type: two directory queries, merged.
async fn search_doctors(
    client: &crate::client::ApiClient,
    query: &str,
    today: NaiveDate,
) -> Result<(Vec<DoctorRow>, Option<String>), ClientError> {
    let (by_name, by_specialty) =
        tokio::join!(client.doctors(query, "", 1), client.doctors("", query, 1));
    let mut doctors = by_name?.items;
    if !query.is_empty() {
        for d in by_specialty?.items {
            if !doctors.iter().any(|x| x.id == d.id) {
                doctors.push(d);
            }
        }
    }
    doctors.sort_by(|a, b| a.specialty.cmp(&b.specialty).then(a.name.cmp(&b.name)));
    let to = today + Days::days(13);
    let slots = join_all(
        doctors
            .iter()
            .map(|d| client.slots(d.id, Some(today), Some(to))),
    )
    .await;
    let mut tz = None;
    let rows = doctors
        .into_iter()
        .zip(slots)
        .map(|(doctor, s)| {
            let next_free = s.ok().and_then(|s| {
                tz.get_or_insert(s.timezone);
                s.slots.into_iter().next()
            });
            DoctorRow { doctor, next_free }
        })
        .collect();
    Ok((rows, tz))
}

async fn load_calendar(
    client: &crate::client::ApiClient,
    doctor: uuid::Uuid,
    month: NaiveDate,
    today: NaiveDate,
    with_availability: bool,
) -> Result<CalendarData, ClientError> {
    let first = month.with_day(1).unwrap_or(month);
    let last = first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .unwrap_or(first);
    let slots_fut = async {
        if last < today {
            Ok(None)
        } else {
            client
                .slots(doctor, Some(first.max(today)), Some(last))
                .await
                .map(Some)
        }
    };
    let query = [
        ("from", first.to_string()),
        ("to", last.to_string()),
        ("doctor_id", doctor.to_string()),
    ];
    let bookings_fut = client.bookings(&query);
    let avail_fut = async {
        if with_availability {
            client.availability(doctor).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (d, s, b, a) = tokio::join!(client.doctor(doctor), slots_fut, bookings_fut, avail_fut);
    let doctor = d?;
    let s = s?;
    // A role that may not list bookings or read availability still sees the free slots.
    let bookings = match b {
        Ok(l) => l
            .items
            .into_iter()
            .filter(|b| b.doctor_id == doctor.id)
            .collect(),
        Err(e) if e.code() == Some(crate::api::codes::FORBIDDEN) => vec![],
        Err(e) => return Err(e),
    };
    let availability = a.ok().flatten();
    let timezone = s
        .as_ref()
        .map(|s| s.timezone.clone())
        .or_else(|| availability.as_ref().map(|a| a.timezone.clone()))
        .unwrap_or_default();
    let (slots, closed) = s.map(|s| (s.slots, s.closed)).unwrap_or_default();
    Ok(CalendarData {
        doctor,
        slots,
        closed,
        bookings,
        availability,
        timezone,
    })
}

/// The `.eml` files of the demo outbox, newest first. The files are the server's, but read
/// as untrusted text: anything odd is shown as it is or skipped, never trusted.
pub fn read_outbox(dir: &Path) -> UiResult<Vec<Mail>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("outbox {}: {e}", dir.display())),
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files.reverse();
    files.truncate(200);
    let mut out = Vec::new();
    for p in files {
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let file = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(parse_mail(file, &text));
    }
    Ok(out)
}

pub fn parse_mail(file: String, text: &str) -> Mail {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    // Unfold continuation lines.
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| -> String {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let encoding = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let body = match encoding.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_string())
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.to_string(),
    };
    Mail {
        file,
        date: header("Date"),
        to: header("To"),
        subject: decode_subject(&header("Subject")),
        body: body.trim_end().to_string(),
    }
}

fn quoted_printable(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
                && let Ok(v) = u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words of a subject line.
fn decode_subject(s: &str) -> String {
    use base64::Engine;
    let mut out = String::new();
    for word in s.split_whitespace() {
        let parts: Vec<&str> = word.split('?').collect();
        if parts.len() == 5 && parts[0] == "=" && parts[4] == "=" {
            let decoded = match parts[2].to_ascii_lowercase().as_str() {
                "b" => base64::engine::general_purpose::STANDARD
                    .decode(parts[3])
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                "q" => Some(quoted_printable(&parts[3].replace('_', " "))),
                _ => None,
            };
            if let Some(d) = decoded {
                out.push_str(&d);
                continue;
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_parsing_survives_odd_input() {
        let m = parse_mail(
            "a.eml".into(),
            "To: pat@x.org\r\nSubject: =?utf-8?b?WW91ciBjb2Rl?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCode: 123=\r\n456 caf=C3=A9\r\n",
        );
        assert_eq!(m.to, "pat@x.org");
        assert_eq!(m.subject, "Your code");
        assert_eq!(m.body, "Code: 123456 café");
        for junk in [
            "",
            "\n\n",
            "Subject: =?x?q?=ZZ?=",
            "=",
            "Content-Transfer-Encoding: base64\n\n!!!",
        ] {
            let _ = parse_mail("j".into(), junk);
        }
    }
}
