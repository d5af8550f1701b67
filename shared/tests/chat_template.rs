//! The chat option of `template.yaml` (`ChatNotifications`) and the code agree, with least
//! privilege: every function that notifies also posts to the chat topic when chat is on, and
//! may publish there and nowhere new; the role a chat channel runs with can do nothing.

use serde_yaml::Value;
use warden::notify::Severity;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `v` as the template spells it, e.g. `!Ref ChatTopic`.
fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap().trim().to_owned()
}

/// The functions that notify: those whose environment names the notification topic.
fn notifying_functions(t: &Value) -> Vec<(String, &Value)> {
    let resources = t["Resources"].as_mapping().unwrap();
    let notifying: Vec<(String, &Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .filter(|(_, r)| !r["Properties"]["Environment"]["Variables"]["TOPIC_ARN"].is_null())
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r))
        .collect();
    assert!(notifying.len() >= 4, "the guard, the enforcer, the reaper, the coordinator");
    notifying
}

#[test]
fn every_function_that_notifies_also_posts_to_chat_when_chat_is_on() {
    let t = template();
    for (name, function) in notifying_functions(&t) {
        let vars = &function["Properties"]["Environment"]["Variables"];
        assert_eq!(
            yaml(&vars["CHAT_TOPIC_ARN"]),
            "!If\n- ChatOn\n- !Ref ChatTopic\n- !Ref AWS::NoValue",
            "{name}"
        );
        assert_eq!(yaml(&vars["CHAT_MIN_SEVERITY"]), "!Ref ChatMinSeverity", "{name}");
    }
    let allowed: Vec<&str> = t["Parameters"]["ChatMinSeverity"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed, Severity::ALL.map(Severity::as_str), "what CHAT_MIN_SEVERITY accepts");
}

#[test]
fn functions_may_only_publish_to_the_chat_topic_and_only_when_chat_is_on() {
    let t = template();
    for (name, function) in notifying_functions(&t) {
        let policies = function["Properties"]["Policies"].as_sequence().unwrap();
        let naming_chat: Vec<&Value> =
            policies.iter().filter(|p| yaml(p).contains("ChatTopic")).collect();
        assert_eq!(naming_chat.len(), 1, "{name}: one chat grant");
        let Value::Tagged(grant) = naming_chat[0] else { panic!("{name}: not under a condition") };
        assert_eq!(grant.tag.to_string(), "!If", "{name}");
        let branches = grant.value.as_sequence().unwrap();
        assert_eq!(branches[0], "ChatOn", "{name}");
        assert_eq!(yaml(&branches[2]), "!Ref AWS::NoValue", "{name}");
        let statements = branches[1]["Statement"].as_sequence().unwrap();
        assert_eq!(statements.len(), 1, "{name}");
        assert_eq!(statements[0]["Action"], "sns:Publish", "{name}");
        assert_eq!(yaml(&statements[0]["Resource"]), "!Ref ChatTopic", "{name}");
    }
    // The chat topic is encrypted with the notification key, which these functions may use.
    let topic = &t["Resources"]["ChatTopic"];
    assert_eq!(topic["Condition"], "ChatOn");
    assert_eq!(yaml(&topic["Properties"]["KmsMasterKeyId"]), "!Ref NotificationKey");
}

#[test]
fn the_chat_channels_role_can_do_nothing_and_trusts_only_amazon_q() {
    let t = template();
    let role = &t["Resources"]["ChatChannelRole"]["Properties"];
    for grant in ["Policies", "ManagedPolicyArns", "PermissionsBoundary"] {
        assert!(role[grant].is_null(), "the channel role has no {grant}");
    }
    assert!(role["Path"].is_null(), "not under /ami-warden/, which member roles trust");
    let trust = role["AssumeRolePolicyDocument"]["Statement"].as_sequence().unwrap();
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0]["Principal"]["Service"], "chatbot.amazonaws.com");
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    for channel in ["ChatSlackChannel", "ChatTeamsChannel"] {
        let props = &t["Resources"][channel]["Properties"];
        assert_eq!(yaml(&props["IamRoleArn"]), "!GetAtt ChatChannelRole.Arn", "{channel}");
        assert_eq!(yaml(&props["SnsTopicArns"]), "- !Ref ChatTopic", "{channel}");
        // Without a guardrail, AdministratorAccess is the channel's ceiling.
        let guardrails = yaml(&props["GuardrailPolicies"]);
        assert!(guardrails.ends_with(":iam::aws:policy/ReadOnlyAccess"), "{channel}: {guardrails}");
        assert_eq!(props["UserRoleRequired"], false, "{channel}");
    }
}

#[test]
fn a_channel_is_created_only_with_chat_on_and_all_of_its_ids() {
    let t = template();
    let conditions = &t["Conditions"];
    for (channel, condition, ids) in [
        ("ChatSlackChannel", "ChatToSlack", &["ChatSlackWorkspaceId", "ChatSlackChannelId"][..]),
        (
            "ChatTeamsChannel",
            "ChatToTeams",
            &["ChatTeamsTenantId", "ChatTeamsTeamId", "ChatTeamsChannelId"][..],
        ),
    ] {
        assert_eq!(t["Resources"][channel]["Condition"], condition);
        let text = yaml(&conditions[condition]);
        assert!(text.contains("!Condition ChatOn"), "{text}");
        for id in ids {
            assert!(text.contains(&format!("!Ref {id}")), "{condition} needs {id}: {text}");
            let rules = yaml(&t["Rules"]);
            assert!(rules.contains(&format!("!Ref {id}")), "a rule refuses a lone {id}");
        }
    }
}
