//! Sizes as people read them, the same in the CLI, the terminal client and the mails:
//! binary units, labelled as such (`912 B`, `47.1 KiB`, `28.6 MiB`), never "MB" for MiB.

pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.1} GiB", f / (K * K * K))
    }
}

/// The first 8 hex digits of a request id: what a person compares with the mail.
pub fn short_id(id: &uuid::Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_and_labelled() {
        assert_eq!(super::bytes(912), "912 B");
        assert_eq!(super::bytes(48_213), "47.1 KiB");
        assert_eq!(super::bytes(30_000_000), "28.6 MiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }
}
