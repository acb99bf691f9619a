//! Ledger entries, byte for byte as DESIGN.md §6:
//! `"clinvault/entry/v1" ‖ kind (u8) ‖ time (i64 BE, unix ms) ‖ body`.
//! Every kind has a fixed length; the decoder takes exactly that many bytes.

use super::hash::leaf_hash;
use super::{Hash, Id, LedgerError};

pub const ENTRY_PREFIX: &[u8] = b"clinvault/entry/v1";
const HEADER_LEN: usize = ENTRY_PREFIX.len() + 1 + 8;

/// A user's role as recorded at registration (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    Patient = 1,
    Doctor = 2,
    Reception = 3,
    Admin = 4,
    Auditor = 5,
    /// Issue 16: a write-only upload station.
    Station = 6,
}

/// How a grant was approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GrantHow {
    /// The requester entered the code mailed to the patient.
    Otp = 1,
    /// The patient approved in their own client and signed the consent.
    SignedByPatient = 2,
}

/// What an access entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccessWhat {
    /// The patient entered the release code: the report became theirs to open.
    ReleasedByOtp = 1,
    /// The server handed a reader their wrapped key.
    KeyServed = 2,
}

/// What an account-status entry records (issue 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccountState {
    /// An administrator deactivated the account: it cannot log in.
    Deactivated = 1,
    /// An administrator reactivated it: it logs in again with the keys it had.
    Reactivated = 2,
}

// Issue 16 (break-glass): kinds 11 and 12.
/// What an emergency-team entry (kind 11) records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TeamChange {
    /// An administrator put the doctor on the emergency team.
    Added = 1,
    /// An administrator took the doctor off it.
    Removed = 2,
}

macro_rules! u8_codes {
    ($ty:ident, $field:literal, $($variant:ident),+) => {
        impl TryFrom<u8> for $ty {
            type Error = LedgerError;
            fn try_from(code: u8) -> Result<Self, LedgerError> {
                $(if code == $ty::$variant as u8 {
                    return Ok($ty::$variant);
                })+
                Err(LedgerError::UnknownCode { field: $field, code })
            }
        }
    };
}
u8_codes!(
    Role, "role", Patient, Doctor, Reception, Admin, Auditor, Station
);
u8_codes!(GrantHow, "grant approval", Otp, SignedByPatient);
u8_codes!(AccessWhat, "access", ReleasedByOtp, KeyServed);
u8_codes!(AccountState, "account state", Deactivated, Reactivated);
u8_codes!(TeamChange, "team change", Added, Removed);

/// One ledger entry. Random ids and hashes only: no names, emails, titles or appointments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    /// Kind 1: a user's public keys, bound to their id and role.
    UserRegistered {
        time_ms: i64,
        user_id: Id,
        role: Role,
        x25519_public: [u8; 32],
        ed25519_public: [u8; 32],
    },
    /// Kind 2: a report's manifest, by hash, with the author's signature over it.
    ReportCommitted {
        time_ms: i64,
        report_id: Id,
        manifest_hash: Hash,
        signature: [u8; 64],
    },
    /// Kind 3: a reader may be given one report's key. Kind 8 (issue 17) is the same with the
    /// grant's expiry (`expires_ms`, Unix ms) recorded: a reader's client refuses the key after
    /// it. Kind 3 (`expires_ms: None`) is what servers before kind 8 appended.
    GrantApproved {
        time_ms: i64,
        grant_id: Id,
        report_id: Id,
        reader_id: Id,
        how: GrantHow,
        expires_ms: Option<i64>,
    },
    /// Kind 4: `wrapper_id` wrapped the report's key to the reader.
    KeyWrapped {
        time_ms: i64,
        grant_id: Id,
        report_id: Id,
        reader_id: Id,
        wrapper_id: Id,
        wrapped_key_hash: Hash,
    },
    /// Kind 5.
    GrantRevoked { time_ms: i64, grant_id: Id },
    /// Kind 6: a report was released to, or its key served to, a reader.
    ReportAccess {
        time_ms: i64,
        report_id: Id,
        reader_id: Id,
        what: AccessWhat,
    },
    /// Kind 7: a one-time code was entered correctly for a request.
    OtpVerified {
        time_ms: i64,
        request_id: Id,
        user_id: Id,
    },
    /// Kind 9 (issue 15): `admin_id` deactivated or reactivated `user_id`'s account. The
    /// account's keys are untouched: its kind-1 entry stays the one that counts.
    AccountStatus {
        time_ms: i64,
        user_id: Id,
        state: AccountState,
        admin_id: Id,
    },
    /// Kind 13 (issue 16): doctor `doctor_id` ordered an upload by station `station_id` for
    /// `patient_id` until `expires_ms` (Unix ms). A station's report is genuine only with an
    /// order in force at its commit; its key is wrapped to the patient and this doctor.
    StationOrder {
        time_ms: i64,
        order_id: Id,
        station_id: Id,
        patient_id: Id,
        doctor_id: Id,
        expires_ms: i64,
    },
    // Issue 16 (break-glass emergency access).
    /// Kind 11: `admin_id` added `member_id` to, or removed them from, the emergency team.
    EmergencyTeam {
        time_ms: i64,
        member_id: Id,
        change: TeamChange,
        admin_id: Id,
    },
    /// Kind 12: `reader_id` broke the glass on `patient_id`'s reports. `reports_hash` is
    /// [`crate::ledger::emergency_reports_hash`] over the released report ids, `reason_hash`
    /// SHA-256 of the reason as typed, `release_ms` when the escrowed keys are released.
    EmergencyAccess {
        time_ms: i64,
        request_id: Id,
        patient_id: Id,
        reader_id: Id,
        reports_hash: Hash,
        reason_hash: Hash,
        release_ms: i64,
    },
}

/// SHA-256 over `"clinvault/emergency-reports/v1"` and the report ids, sorted: what a kind-12
/// entry records of the reports a break-glass request released.
pub fn emergency_reports_hash(ids: &[Id]) -> Hash {
    use sha2::Digest;
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut h = sha2::Sha256::new();
    h.update(b"clinvault/emergency-reports/v1");
    for id in &sorted {
        h.update(id);
    }
    h.finalize().into()
}

/// Body length of each kind, or `None` for an unknown kind.
fn body_len(kind: u8) -> Option<usize> {
    Some(match kind {
        1 => 16 + 1 + 32 + 32,
        2 => 16 + 32 + 64,
        3 => 16 * 3 + 1,
        4 => 16 * 4 + 32,
        5 => 16,
        6 => 16 * 2 + 1,
        7 => 16 * 2,
        8 => 16 * 3 + 1 + 8,
        9 => 16 + 1 + 16,
        13 => 16 * 4 + 8,
        11 => 16 + 1 + 16,
        12 => 16 * 3 + 32 * 2 + 8,
        _ => return None,
    })
}

impl Entry {
    pub fn kind(&self) -> u8 {
        match self {
            Entry::UserRegistered { .. } => 1,
            Entry::ReportCommitted { .. } => 2,
            Entry::GrantApproved {
                expires_ms: None, ..
            } => 3,
            Entry::GrantApproved {
                expires_ms: Some(_),
                ..
            } => 8,
            Entry::KeyWrapped { .. } => 4,
            Entry::GrantRevoked { .. } => 5,
            Entry::ReportAccess { .. } => 6,
            Entry::OtpVerified { .. } => 7,
            Entry::AccountStatus { .. } => 9,
            Entry::StationOrder { .. } => 13,
            Entry::EmergencyTeam { .. } => 11,
            Entry::EmergencyAccess { .. } => 12,
        }
    }

    pub fn time_ms(&self) -> i64 {
        match self {
            Entry::UserRegistered { time_ms, .. }
            | Entry::ReportCommitted { time_ms, .. }
            | Entry::GrantApproved { time_ms, .. }
            | Entry::KeyWrapped { time_ms, .. }
            | Entry::GrantRevoked { time_ms, .. }
            | Entry::ReportAccess { time_ms, .. }
            | Entry::OtpVerified { time_ms, .. }
            | Entry::AccountStatus { time_ms, .. }
            | Entry::StationOrder { time_ms, .. } => *time_ms,
            Entry::EmergencyTeam { time_ms, .. } | Entry::EmergencyAccess { time_ms, .. } => {
                *time_ms
            }
        }
    }

    /// The leaf hash this entry has in the tree: `SHA-256(0x00 ‖ to_bytes())`.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.to_bytes())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let kind = self.kind();
        let mut out = Vec::with_capacity(HEADER_LEN + body_len(kind).unwrap_or(0));
        out.extend_from_slice(ENTRY_PREFIX);
        out.push(kind);
        out.extend_from_slice(&self.time_ms().to_be_bytes());
        match self {
            Entry::UserRegistered {
                user_id,
                role,
                x25519_public,
                ed25519_public,
                ..
            } => {
                out.extend_from_slice(user_id);
                out.push(*role as u8);
                out.extend_from_slice(x25519_public);
                out.extend_from_slice(ed25519_public);
            }
            Entry::ReportCommitted {
                report_id,
                manifest_hash,
                signature,
                ..
            } => {
                out.extend_from_slice(report_id);
                out.extend_from_slice(manifest_hash);
                out.extend_from_slice(signature);
            }
            Entry::GrantApproved {
                grant_id,
                report_id,
                reader_id,
                how,
                expires_ms,
                ..
            } => {
                out.extend_from_slice(grant_id);
                out.extend_from_slice(report_id);
                out.extend_from_slice(reader_id);
                out.push(*how as u8);
                if let Some(e) = expires_ms {
                    out.extend_from_slice(&e.to_be_bytes());
                }
            }
            Entry::KeyWrapped {
                grant_id,
                report_id,
                reader_id,
                wrapper_id,
                wrapped_key_hash,
                ..
            } => {
                out.extend_from_slice(grant_id);
                out.extend_from_slice(report_id);
                out.extend_from_slice(reader_id);
                out.extend_from_slice(wrapper_id);
                out.extend_from_slice(wrapped_key_hash);
            }
            Entry::GrantRevoked { grant_id, .. } => out.extend_from_slice(grant_id),
            Entry::ReportAccess {
                report_id,
                reader_id,
                what,
                ..
            } => {
                out.extend_from_slice(report_id);
                out.extend_from_slice(reader_id);
                out.push(*what as u8);
            }
            Entry::OtpVerified {
                request_id,
                user_id,
                ..
            } => {
                out.extend_from_slice(request_id);
                out.extend_from_slice(user_id);
            }
            Entry::AccountStatus {
                user_id,
                state,
                admin_id,
                ..
            } => {
                out.extend_from_slice(user_id);
                out.push(*state as u8);
                out.extend_from_slice(admin_id);
            }
            Entry::StationOrder {
                order_id,
                station_id,
                patient_id,
                doctor_id,
                expires_ms,
                ..
            } => {
                out.extend_from_slice(order_id);
                out.extend_from_slice(station_id);
                out.extend_from_slice(patient_id);
                out.extend_from_slice(doctor_id);
                out.extend_from_slice(&expires_ms.to_be_bytes());
            }
            Entry::EmergencyTeam {
                member_id,
                change,
                admin_id,
                ..
            } => {
                out.extend_from_slice(member_id);
                out.push(*change as u8);
                out.extend_from_slice(admin_id);
            }
            Entry::EmergencyAccess {
                request_id,
                patient_id,
                reader_id,
                reports_hash,
                reason_hash,
                release_ms,
                ..
            } => {
                out.extend_from_slice(request_id);
                out.extend_from_slice(patient_id);
                out.extend_from_slice(reader_id);
                out.extend_from_slice(reports_hash);
                out.extend_from_slice(reason_hash);
                out.extend_from_slice(&release_ms.to_be_bytes());
            }
        }
        out
    }

    /// Decodes untrusted entry bytes. Refuses a wrong prefix, an unknown kind, any length
    /// other than the kind's (so trailing bytes too) and unknown role / how / what codes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry, LedgerError> {
        let rest = bytes
            .strip_prefix(ENTRY_PREFIX)
            .ok_or(LedgerError::EntryPrefix)?;
        let (&kind, body) = rest
            .split_first()
            .ok_or(LedgerError::EntryTooShort(bytes.len()))?;
        let want = HEADER_LEN + body_len(kind).ok_or(LedgerError::UnknownKind(kind))?;
        if bytes.len() != want {
            return Err(LedgerError::EntryLength {
                kind,
                want,
                got: bytes.len(),
            });
        }
        let mut r = Reader {
            rest: body,
            kind,
            want,
            got: bytes.len(),
        };
        let time_ms = i64::from_be_bytes(r.take()?);
        let entry = match kind {
            1 => Entry::UserRegistered {
                time_ms,
                user_id: r.take()?,
                role: Role::try_from(r.byte()?)?,
                x25519_public: r.take()?,
                ed25519_public: r.take()?,
            },
            2 => Entry::ReportCommitted {
                time_ms,
                report_id: r.take()?,
                manifest_hash: r.take()?,
                signature: r.take()?,
            },
            3 | 8 => Entry::GrantApproved {
                time_ms,
                grant_id: r.take()?,
                report_id: r.take()?,
                reader_id: r.take()?,
                how: GrantHow::try_from(r.byte()?)?,
                expires_ms: if kind == 8 {
                    Some(i64::from_be_bytes(r.take()?))
                } else {
                    None
                },
            },
            4 => Entry::KeyWrapped {
                time_ms,
                grant_id: r.take()?,
                report_id: r.take()?,
                reader_id: r.take()?,
                wrapper_id: r.take()?,
                wrapped_key_hash: r.take()?,
            },
            5 => Entry::GrantRevoked {
                time_ms,
                grant_id: r.take()?,
            },
            6 => Entry::ReportAccess {
                time_ms,
                report_id: r.take()?,
                reader_id: r.take()?,
                what: AccessWhat::try_from(r.byte()?)?,
            },
            7 => Entry::OtpVerified {
                time_ms,
                request_id: r.take()?,
                user_id: r.take()?,
            },
            9 => Entry::AccountStatus {
                time_ms,
                user_id: r.take()?,
                state: AccountState::try_from(r.byte()?)?,
                admin_id: r.take()?,
            },
            13 => Entry::StationOrder {
                time_ms,
                order_id: r.take()?,
                station_id: r.take()?,
                patient_id: r.take()?,
                doctor_id: r.take()?,
                expires_ms: i64::from_be_bytes(r.take()?),
            },
            11 => Entry::EmergencyTeam {
                time_ms,
                member_id: r.take()?,
                change: TeamChange::try_from(r.byte()?)?,
                admin_id: r.take()?,
            },
            12 => Entry::EmergencyAccess {
                time_ms,
                request_id: r.take()?,
                patient_id: r.take()?,
                reader_id: r.take()?,
                reports_hash: r.take()?,
                reason_hash: r.take()?,
                release_ms: i64::from_be_bytes(r.take()?),
            },
            _ => return Err(LedgerError::UnknownKind(kind)),
        };
        if !r.rest.is_empty() {
            return Err(r.length_error());
        }
        Ok(entry)
    }
}

/// Reads fixed-size fields; running short is a length error, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
    kind: u8,
    want: usize,
    got: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], LedgerError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.length_error())?;
        self.rest = tail;
        Ok(*head)
    }

    fn byte(&mut self) -> Result<u8, LedgerError> {
        let [b] = self.take::<1>()?;
        Ok(b)
    }

    fn length_error(&self) -> LedgerError {
        LedgerError::EntryLength {
            kind: self.kind,
            want: self.want,
            got: self.got,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Entry> {
        vec![
            Entry::UserRegistered {
                time_ms: 1,
                user_id: [1; 16],
                role: Role::Doctor,
                x25519_public: [2; 32],
                ed25519_public: [3; 32],
            },
            Entry::ReportCommitted {
                time_ms: -1,
                report_id: [4; 16],
                manifest_hash: [5; 32],
                signature: [6; 64],
            },
            Entry::GrantApproved {
                time_ms: i64::MAX,
                grant_id: [7; 16],
                report_id: [8; 16],
                reader_id: [9; 16],
                how: GrantHow::SignedByPatient,
                expires_ms: None,
            },
            Entry::KeyWrapped {
                time_ms: i64::MIN,
                grant_id: [10; 16],
                report_id: [11; 16],
                reader_id: [12; 16],
                wrapper_id: [13; 16],
                wrapped_key_hash: [14; 32],
            },
            Entry::GrantRevoked {
                time_ms: 0,
                grant_id: [15; 16],
            },
            Entry::ReportAccess {
                time_ms: 2,
                report_id: [16; 16],
                reader_id: [17; 16],
                what: AccessWhat::KeyServed,
            },
            Entry::OtpVerified {
                time_ms: 3,
                request_id: [18; 16],
                user_id: [19; 16],
            },
            Entry::GrantApproved {
                time_ms: 5,
                grant_id: [7; 16],
                report_id: [8; 16],
                reader_id: [9; 16],
                how: GrantHow::Otp,
                expires_ms: Some(i64::MIN),
            },
            Entry::AccountStatus {
                time_ms: 6,
                user_id: [20; 16],
                state: AccountState::Reactivated,
                admin_id: [21; 16],
            },
            Entry::StationOrder {
                time_ms: 7,
                order_id: [22; 16],
                station_id: [23; 16],
                patient_id: [24; 16],
                doctor_id: [25; 16],
                expires_ms: 8,
            },
            Entry::EmergencyTeam {
                time_ms: 7,
                member_id: [22; 16],
                change: TeamChange::Removed,
                admin_id: [23; 16],
            },
            Entry::EmergencyAccess {
                time_ms: 8,
                request_id: [24; 16],
                patient_id: [25; 16],
                reader_id: [26; 16],
                reports_hash: [27; 32],
                reason_hash: [28; 32],
                release_ms: -9,
            },
        ]
    }

    #[test]
    fn exact_layout_of_a_user_entry() {
        let bytes = all_kinds()[0].to_bytes();
        let mut want = b"clinvault/entry/v1".to_vec();
        want.push(1);
        want.extend(1i64.to_be_bytes());
        want.extend([1; 16]);
        want.push(2);
        want.extend([2; 32]);
        want.extend([3; 32]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn exact_layout_of_an_emergency_access_entry() {
        let bytes = all_kinds()[11].to_bytes();
        let mut want = b"clinvault/entry/v1".to_vec();
        want.push(12);
        want.extend(8i64.to_be_bytes());
        want.extend([24; 16]);
        want.extend([25; 16]);
        want.extend([26; 16]);
        want.extend([27; 32]);
        want.extend([28; 32]);
        want.extend((-9i64).to_be_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn emergency_reports_hash_ignores_order_but_not_content() {
        let a = emergency_reports_hash(&[[1; 16], [2; 16]]);
        assert_eq!(a, emergency_reports_hash(&[[2; 16], [1; 16]]));
        assert_ne!(a, emergency_reports_hash(&[[1; 16]]));
        assert_ne!(a, emergency_reports_hash(&[[1; 16], [3; 16]]));
    }

    #[test]
    fn every_kind_round_trips_and_refuses_any_other_length() {
        for e in all_kinds() {
            let bytes = e.to_bytes();
            assert_eq!(bytes.len(), HEADER_LEN + body_len(e.kind()).unwrap());
            assert_eq!(Entry::from_bytes(&bytes), Ok(e.clone()));
            for n in 0..bytes.len() {
                assert!(
                    Entry::from_bytes(&bytes[..n]).is_err(),
                    "{} cut to {n}",
                    e.kind()
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(
                Entry::from_bytes(&longer),
                Err(LedgerError::EntryLength { .. })
            ));
        }
    }

    #[test]
    fn unknown_kinds_and_codes_are_refused() {
        let mut b = all_kinds()[4].to_bytes();
        for kind in [0u8, 10, 255] {
            b[ENTRY_PREFIX.len()] = kind;
            assert_eq!(Entry::from_bytes(&b), Err(LedgerError::UnknownKind(kind)));
        }
        let code_at = HEADER_LEN + 16;
        let mut user = all_kinds()[0].to_bytes();
        for code in [0u8, 7, 255] {
            user[code_at] = code;
            assert_eq!(
                Entry::from_bytes(&user),
                Err(LedgerError::UnknownCode {
                    field: "role",
                    code
                })
            );
        }
        let mut grant = all_kinds()[2].to_bytes();
        *grant.last_mut().unwrap() = 3;
        assert!(matches!(
            Entry::from_bytes(&grant),
            Err(LedgerError::UnknownCode {
                field: "grant approval",
                code: 3
            })
        ));
        let mut access = all_kinds()[5].to_bytes();
        *access.last_mut().unwrap() = 0;
        assert!(matches!(
            Entry::from_bytes(&access),
            Err(LedgerError::UnknownCode {
                field: "access",
                code: 0
            })
        ));
        let mut status = all_kinds()[8].to_bytes();
        for code in [0u8, 3, 255] {
            status[HEADER_LEN + 16] = code;
            assert_eq!(
                Entry::from_bytes(&status),
                Err(LedgerError::UnknownCode {
                    field: "account state",
                    code
                })
            );
        }
        let mut team = all_kinds()[10].to_bytes();
        for code in [0u8, 3, 255] {
            team[HEADER_LEN + 16] = code;
            assert_eq!(
                Entry::from_bytes(&team),
                Err(LedgerError::UnknownCode {
                    field: "team change",
                    code
                })
            );
        }
        let mut prefix = all_kinds()[6].to_bytes();
        prefix[0] = b'C';
        assert_eq!(Entry::from_bytes(&prefix), Err(LedgerError::EntryPrefix));
    }

    /// Issue 16: kind 13 byte for byte (docs/protocol.md §6.2), and role 6 decodes.
    #[test]
    fn exact_layout_of_a_station_order() {
        let e = Entry::StationOrder {
            time_ms: 1,
            order_id: [1; 16],
            station_id: [2; 16],
            patient_id: [3; 16],
            doctor_id: [4; 16],
            expires_ms: 5,
        };
        let mut want = b"clinvault/entry/v1".to_vec();
        want.push(13);
        want.extend(1i64.to_be_bytes());
        for b in 1..=4u8 {
            want.extend([b; 16]);
        }
        want.extend(5i64.to_be_bytes());
        assert_eq!(want.len(), 99);
        assert_eq!(e.to_bytes(), want);
        assert_eq!(Entry::from_bytes(&want), Ok(e));
        let mut user = all_kinds()[0].to_bytes();
        user[HEADER_LEN + 16] = 6;
        assert!(matches!(
            Entry::from_bytes(&user),
            Ok(Entry::UserRegistered {
                role: Role::Station,
                ..
            })
        ));
    }
}
