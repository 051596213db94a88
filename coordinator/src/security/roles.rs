//! Who may call what on JobService: the three roles, the role each method
//! needs, and the identity of an authenticated caller.

use std::fmt;
use std::str::FromStr;

/// A caller's rights; each role has every right of the roles below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: get, list, watch, history, rejects, verify.
    Viewer,
    /// Also changes jobs: submit, cancel, resume, repair.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// The name used in the tokens file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of the three.
#[derive(Debug, thiserror::Error)]
#[error("unknown role '{0}': use viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// The role a JobService method needs. Methods not listed (added later, or
/// unknown) need `admin`: a new method is closed until it is listed here.
pub fn required_role(method: &str) -> Role {
    match method {
        "GetJob" | "ListJobs" | "WatchJob" | "ListRejects" | "VerifyJob" | "ListHistory" => {
            Role::Viewer
        }
        // PlanJob reads the databases as a submission would
        "SubmitJob" | "PlanJob" | "CancelJob" | "ResumeJob" | "RepairJob" => Role::Operator,
        // removes rows of the targets' ledgers
        "CollectGarbage" => Role::Admin,
        _ => Role::Admin,
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `authorization: Bearer …` matched a line of the tokens file.
    Token,
    /// A client certificate issued by `--client-ca`, its common name in the tokens file.
    Certificate,
    /// Authentication is off: anyone on the network.
    Anonymous,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Token => "token",
            Credential::Certificate => "certificate",
            Credential::Anonymous => "anonymous",
        })
    }
}

/// The authenticated caller of a JobService request, put in the request's
/// extensions by the auth layer for the handlers (audit log, `submitted_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The `name` column of the tokens file; empty when anonymous.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// How it authenticated.
    pub credential: Credential,
}

impl Caller {
    /// The caller when authentication is off.
    pub fn anonymous() -> Self {
        Self {
            name: String::new(),
            role: Role::Admin,
            credential: Credential::Anonymous,
        }
    }

    /// The name for logs: the tokens file's name, or `anonymous`.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            "anonymous"
        } else {
            &self.name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_methods_mapped() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(required_role("WatchJob"), Role::Viewer);
        assert_eq!(required_role("SubmitJob"), Role::Operator);
        assert_eq!(required_role("PlanJob"), Role::Operator);
        assert_eq!(required_role("CollectGarbage"), Role::Admin);
        assert_eq!(required_role("SomethingNew"), Role::Admin);
        assert_eq!("operator".parse::<Role>().unwrap(), Role::Operator);
        assert!("Operator".parse::<Role>().is_err());
    }
}
