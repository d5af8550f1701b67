//! Builders of EventBridge "AWS API Call via CloudTrail" events (and native AMI state changes)
//! in the shapes documented in the team's CLOUDTRAIL-SHAPES.md: full envelopes with the common
//! CloudTrail fields, lowerCamel request parameters, `{"items": [...]}` lists.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// Builds events as one caller in one account would produce them.
pub struct Trail {
    account: String,
    role: String,
    seed: u64,
    counter: AtomicU64,
}

impl Trail {
    /// A trail for `account`, the caller an assumed role named `role`.
    pub fn new(account: &str, role: &str) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        Self::with_seed(account, role, seed)
    }

    /// Like [`Trail::new`] with a fixed seed: the same calls give the same event ids.
    pub fn with_seed(account: &str, role: &str, seed: u64) -> Self {
        Self { account: account.into(), role: role.into(), seed, counter: AtomicU64::new(0) }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// A fresh UUID-shaped id.
    pub fn uuid(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut x = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (a, b) = (next(), next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn user_identity(&self) -> Value {
        let account = &self.account;
        let role = &self.role;
        json!({
            "type": "AssumedRole",
            "principalId": format!("AROAEXAMPLEROLEID:{role}-session"),
            "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{role}-session"),
            "accountId": account,
            "accessKeyId": "ASIAEXAMPLEKEYID",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEROLEID",
                    "arn": format!("arn:aws:iam::{account}:role/{role}"),
                    "accountId": account,
                    "userName": role
                },
                "attributes": {"creationDate": "2026-11-24T08:00:00Z", "mfaAuthenticated": "false"}
            }
        })
    }

    fn record(&self, region: &str, event_name: &str, at: DateTime<Utc>, request: Value) -> Value {
        let request_id = self.uuid();
        json!({
            "eventVersion": "1.11",
            "userIdentity": self.user_identity(),
            "eventTime": at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "eventSource": "ec2.amazonaws.com",
            "eventName": event_name,
            "awsRegion": region,
            "sourceIPAddress": "203.0.113.10",
            "userAgent": "aws-sdk-rust/1.3 os/linux lang/rust/1.95.0 api/ec2",
            "requestParameters": request,
            "responseElements": null,
            "requestID": request_id,
            "eventID": self.uuid(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": self.account,
            "eventCategory": "Management",
            "tlsDetails": {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": format!("ec2.{region}.amazonaws.com")
            }
        })
    }

    fn envelope(
        &self,
        region: &str,
        at: DateTime<Utc>,
        detail_type: &str,
        resources: Value,
        detail: Value,
    ) -> Value {
        json!({
            "version": "0",
            "id": self.uuid(),
            "detail-type": detail_type,
            "source": "aws.ec2",
            "account": self.account,
            "time": at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "region": region,
            "resources": resources,
            "detail": detail
        })
    }

    /// A successful call: `response` gets the call's `requestId` added.
    pub fn api_call(
        &self,
        region: &str,
        event_name: &str,
        request: Value,
        mut response: Value,
    ) -> Value {
        let at = Utc::now();
        let mut record = self.record(region, event_name, at, request);
        if let Some(obj) = response.as_object_mut() {
            obj.insert("requestId".into(), record["requestID"].clone());
        }
        record["responseElements"] = response;
        self.envelope(region, at, "AWS API Call via CloudTrail", json!([]), record)
    }

    /// A RunInstances of one instance, `instance_id`, of `image_id`.
    pub fn run_instances(&self, region: &str, image_id: &str, instance_id: &str) -> Value {
        self.api_call(
            region,
            "RunInstances",
            json!({"instancesSet": {"items": [{"imageId": image_id, "minCount": 1, "maxCount": 1}]},
                   "instanceType": "t3.micro"}),
            json!({"instancesSet": {"items": [{"instanceId": instance_id, "imageId": image_id,
                   "instanceState": {"code": 0, "name": "pending"}}]}}),
        )
    }

    /// A failed call: `errorCode`, `errorMessage`, `responseElements: null`.
    pub fn failed_call(
        &self,
        region: &str,
        event_name: &str,
        request: Value,
        error_code: &str,
        message: &str,
    ) -> Value {
        let at = Utc::now();
        let mut record = self.record(region, event_name, at, request);
        record["errorCode"] = json!(error_code);
        record["errorMessage"] = json!(message);
        self.envelope(region, at, "AWS API Call via CloudTrail", json!([]), record)
    }

    /// The native "EC2 AMI State Change" event.
    pub fn ami_state_change(&self, region: &str, image_id: &str, state: &str) -> Value {
        let at = Utc::now();
        let resources = json!([format!("arn:aws:ec2:{region}::image/{image_id}")]);
        let detail = json!({"RequestId": self.uuid(), "ImageId": image_id, "State": state, "ErrorMessage": ""});
        self.envelope(region, at, "EC2 AMI State Change", resources, detail)
    }

    /// The same record delivered again: a new envelope `id`, the same `detail.eventID`.
    pub fn redelivery(&self, event: &Value) -> Value {
        let mut again = event.clone();
        again["id"] = json!(self.uuid());
        again
    }
}

/// `{"items": [...]}`, the container old-style EC2 APIs log lists in.
pub fn items(list: Vec<Value>) -> Value {
    json!({ "items": list })
}
