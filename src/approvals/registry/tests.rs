//! The registry on its own: answers reach the waiting request, the per-task cap,
//! what a `--for` grant covers, and answers that race a timeout.

use super::*;

fn request(task: &str, rule: &str) -> HoldRequest {
    HoldRequest {
        summary: RequestSummary {
            task: task.into(),
            policy: "p".into(),
            rule: rule.into(),
            method: "PUT".into(),
            scheme: "https".into(),
            host: "api.test".into(),
            port: 443,
            path: "/merge".into(),
            query: None,
            body_bytes: 0,
            content_type: None,
            budget: None,
        },
        rule_key: format!("key of {rule}"),
        headers: Vec::new(),
        body_sha256: None,
        body_preview: bytes::Bytes::new(),
        timeout: Duration::from_secs(60),
    }
}

/// Seat and hold, as the pipeline does.
fn hold(approvals: &Approvals, request: HoldRequest) -> Result<Ticket<'_>, HoldError> {
    let seat = approvals.seat(&request.summary.task)?;
    approvals.hold(seat, request)
}

fn registry(max: usize) -> Approvals {
    Approvals::new(max, std::env::temp_dir(), None)
}

#[tokio::test]
async fn approve_and_deny_reach_the_waiting_ticket() {
    let approvals = registry(8);
    let mut ticket = hold(&approvals, request("t1", "merge")).unwrap();
    let id = ticket.id().to_string();
    assert_eq!(approvals.pending().len(), 1);
    approvals
        .approve(
            &id,
            Answer {
                by: Some("alice".into()),
                ..Answer::default()
            },
        )
        .unwrap();
    let verdict = ticket.verdict().await;
    assert!(verdict.approved);
    assert_eq!(verdict.by.as_deref(), Some("alice"));
    assert_eq!(approvals.pending_count(), 0);
    assert!(
        matches!(
            approvals.approve(&id, Answer::default()),
            Err(AnswerError::NotPending(ref gone)) if *gone == id
        ),
        "a hold is answered once"
    );

    let mut ticket = hold(&approvals, request("t1", "merge")).unwrap();
    let id = ticket.id().to_string();
    approvals
        .deny(
            &id,
            Answer {
                reason: Some("no".into()),
                ..Answer::default()
            },
        )
        .unwrap();
    let verdict = ticket.verdict().await;
    assert_eq!(
        (verdict.approved, verdict.outcome),
        (false, ApprovalOutcome::Denied)
    );
}

#[test]
fn the_cap_is_per_task_and_a_dropped_ticket_frees_its_place() {
    let approvals = registry(2);
    let a = hold(&approvals, request("t1", "r")).unwrap();
    let _b = hold(&approvals, request("t1", "r")).unwrap();
    assert!(hold(&approvals, request("t1", "r")).is_err());
    let _other = hold(&approvals, request("t2", "r")).unwrap();
    drop(a);
    assert_eq!(approvals.pending_count(), 2);
    // A request still sending its body holds a seat: it counts too.
    let seat = approvals.seat("t1").unwrap();
    assert!(approvals.seat("t1").is_err());
    drop(seat);
    let _c = hold(&approvals, request("t1", "r")).unwrap();
    assert_eq!(approvals.pending_count(), 3);
}

#[tokio::test]
async fn a_grant_covers_the_same_task_and_rule_only_and_releases_pending_ones() {
    let approvals = registry(8);
    let first = hold(&approvals, request("t1", "merge")).unwrap();
    let mut second = hold(&approvals, request("t1", "merge")).unwrap();
    let mut other_rule = hold(&approvals, request("t1", "deploy")).unwrap();
    let grant = approvals
        .approve(
            first.id(),
            Answer {
                grant_for: Some("10m".into()),
                ..Answer::default()
            },
        )
        .unwrap()
        .expect("a grant");
    let verdict = second.verdict().await;
    assert!(verdict.approved);
    assert_eq!(verdict.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(verdict.hold, second.id(), "recorded under its own id");
    assert!(approvals.granted("t1", "p", "key of merge").is_some());
    assert!(approvals.granted("t2", "p", "key of merge").is_none());
    assert!(approvals.granted("t1", "p", "key of deploy").is_none());
    assert_eq!(approvals.pending().len(), 1, "the other rule still waits");
    let still = tokio::time::timeout(Duration::from_millis(50), other_rule.verdict()).await;
    assert!(still.is_err());
}

#[tokio::test]
async fn a_grant_made_while_a_body_arrives_covers_that_request() {
    let approvals = registry(8);
    let seat = approvals.seat("t1").unwrap();
    let first = hold(&approvals, request("t1", "merge")).unwrap();
    let grant = approvals
        .approve(
            first.id(),
            Answer {
                grant_for: Some("10m".into()),
                ..Answer::default()
            },
        )
        .unwrap()
        .unwrap();
    let mut late = approvals.hold(seat, request("t1", "merge")).unwrap();
    let verdict = late.verdict().await;
    assert!(verdict.approved);
    assert_eq!(verdict.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(approvals.pending_count(), 0, "never listed as waiting");
}

#[test]
fn an_answer_that_races_a_timeout_wins_and_bad_answers_are_refused() {
    let approvals = registry(8);
    let ticket = hold(&approvals, request("t1", "r")).unwrap();
    let id = ticket.id().to_string();
    approvals.approve(&id, Answer::default()).unwrap();
    let verdict = ticket.close(Verdict::ended(&id, ApprovalOutcome::Timeout, "late".into()));
    assert!(verdict.approved, "the operator's answer counts");

    let ticket = hold(&approvals, request("t1", "r")).unwrap();
    let id = ticket.id().to_string();
    let verdict = ticket.close(Verdict::ended(&id, ApprovalOutcome::Timeout, "late".into()));
    assert_eq!(verdict.outcome, ApprovalOutcome::Timeout);
    assert!(matches!(
        approvals.approve(&id, Answer::default()),
        Err(AnswerError::NotPending(_))
    ));

    let _ticket = hold(&approvals, request("t1", "r")).unwrap();
    let id = _ticket.id().to_string();
    for bad in ["0s", "forever", "48h"] {
        let answer = Answer {
            grant_for: Some(bad.into()),
            ..Answer::default()
        };
        assert!(matches!(
            approvals.approve(&id, answer),
            Err(AnswerError::Invalid(_))
        ));
    }
    let long = Answer {
        by: Some("x".repeat(MAX_BY + 1)),
        ..Answer::default()
    };
    assert!(matches!(
        approvals.deny(&id, long),
        Err(AnswerError::Invalid(_))
    ));
    assert_eq!(
        approvals.pending_count(),
        1,
        "a refused answer leaves the hold"
    );
}

#[test]
fn every_outcome_is_written_as_its_name() {
    use ApprovalOutcome::*;
    let all = [
        Approved,
        Denied,
        Timeout,
        TaskEnded,
        Withdrawn,
        Shutdown,
        PolicyChanged,
        LeaseExpired,
    ];
    let names: Vec<String> = all
        .iter()
        .map(|o| {
            serde_json::to_value(o)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "approved",
            "denied",
            "timeout",
            "task_ended",
            "withdrawn",
            "shutdown",
            "policy_changed",
            "lease_expired"
        ]
    );
    for outcome in all {
        assert_eq!(
            serde_json::to_value(outcome).unwrap(),
            serde_json::Value::from(outcome.as_str())
        );
    }
}
