//! Access: every endpoint but health, readiness and metrics needs a token; each role reaches
//! what it should; a contractor sees only its own sections' data, and nothing else exists
//! for it (404) or is allowed (403). The endpoint list is the API's own OpenAPI document, so
//! endpoints added later are covered too.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Every documented GET path, with its path parameters filled in.
async fn documented_get_paths(api: std::net::SocketAddr) -> Vec<String> {
    let (status, doc) = get_json(api, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let mut paths: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| ops.get("get").is_some())
        .map(|(path, _)| {
            path.replace("{device_id}", "sw-01")
                .replace("{segment}", "0")
        })
        // Required parameters.
        .map(|path| match path.as_str() {
            "/api/v1/coverage/daily" => format!("{path}?from=2026-11-01&to=2026-11-02"),
            "/api/v1/assessment" => format!("{path}?contractor=acme-cleaning&month=2026-11"),
            _ => path,
        })
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "{paths:?}");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_a_token_and_each_role_gets_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    // A little data: fixes of acme's sweeper sw-01 and green's sw-02, and of ct-09 that no
    // section lists, so that devices and tracks exist.
    let mut publisher = Publisher::for_stack(&stack);
    for device in ["sw-01", "sw-02", "ct-09"] {
        publisher
            .publish(&fixes_topic(device), fix_batch(device, 0, 50))
            .await;
    }
    eventually("the fixes", Duration::from_secs(10), || async {
        let (_, page) = get_json(api, "/api/v1/vehicles").await;
        (page["items"].as_array()?.len() == 3).then_some(())
    })
    .await;

    let open = ["/healthz", "/readyz", "/metrics"];
    for path in documented_get_paths(api).await {
        let (anonymous, body) = get_json_as(api, &path, None).await;
        let (forged, _) = get_json_as(api, &path, Some("not-a-token")).await;
        if open.contains(&path.as_str()) {
            assert_ne!(anonymous, 401, "{path}");
            continue;
        }
        assert_eq!((anonymous, forged), (401, 401), "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (admin, body) = get_json_as(api, &path, Some(ADMIN_TOKEN)).await;
        assert!(admin == 200 || admin == 404, "{path}: admin {admin} {body}");
        let (dispatcher, _) = get_json_as(api, &path, Some(DISPATCHER_TOKEN)).await;
        let (contractor, body) = get_json_as(api, &path, Some(ACME_TOKEN)).await;
        if path.starts_with("/api/v1/credentials") {
            assert_eq!(
                (dispatcher, contractor),
                (403, 403),
                "{path}: credentials are the admin's alone"
            );
            continue;
        }
        assert_eq!(
            dispatcher, admin,
            "{path}: dispatchers read what admins read"
        );
        assert!(
            [200, 403, 404].contains(&contractor),
            "{path}: contractor {contractor} {body}"
        );
        let operations = ["/api/v1/dead-letters", "/api/v1/ingest"];
        if path == "/api/v1/bins" || operations.iter().any(|p| path.starts_with(p)) {
            assert_eq!(
                contractor, 403,
                "{path}: bins and operations are the city's"
            );
        }
    }

    // A contractor sees the devices its sections list, and no other exists for it.
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (token, own, others) in [
        (ACME_TOKEN, "sw-01", ["sw-02", "ct-09"]),
        (GREEN_TOKEN, "sw-02", ["sw-01", "ct-09"]),
    ] {
        for list in [
            "/api/v1/devices",
            "/api/v1/vehicles",
            "/api/v1/devices?kind=sweeper",
        ] {
            let (status, page) = get_json_as(api, list, Some(token)).await;
            assert_eq!(status, 200, "{list}: {page}");
            assert_eq!(ids(&page), [own], "{token} {list}");
        }
        for path in [
            format!("/api/v1/devices/{own}"),
            format!("/api/v1/vehicles/{own}/track"),
        ] {
            let (status, body) = get_json_as(api, &path, Some(token)).await;
            assert_eq!(status, 200, "{token} {path}: {body}");
        }
        for other in others {
            for path in [
                format!("/api/v1/devices/{other}"),
                format!("/api/v1/vehicles/{other}/track"),
            ] {
                let (status, body) = get_json_as(api, &path, Some(token)).await;
                assert_eq!(status, 404, "{token} {path}: {body}");
            }
        }
    }
    let (_, page) = get_json(api, "/api/v1/devices").await;
    assert_eq!(ids(&page), ["ct-09", "sw-01", "sw-02"], "the city sees all");

    // A contractor's scope is its own sections.
    let (_, zones) = get_json_as(api, "/api/v1/zones", Some(ACME_TOKEN)).await;
    let own: Vec<&str> = zones["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["id"].as_str().unwrap())
        .collect();
    assert_eq!(own, ["SW", "NW"]);
    assert!(zones["grids"].as_array().unwrap().is_empty());
    let (_, mine) = get_json_as(api, "/api/v1/coverage", Some(ACME_TOKEN)).await;
    let (_, theirs) = get_json(api, "/api/v1/coverage?contractor=acme-cleaning").await;
    assert_eq!(mine["segments"], theirs["segments"]);
    assert_eq!(mine["scope"], "contractor:acme-cleaning");
    for path in [
        "/api/v1/coverage?contractor=green-city",
        "/api/v1/coverage?section=SE",
        "/api/v1/coverage/sections?section=NE",
    ] {
        let (status, body) = get_json_as(api, path, Some(ACME_TOKEN)).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, map) = get_json(api, "/api/v1/coverage/segments").await;
    let green_segment = map["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["properties"]["contractor"] == "green-city")
        .unwrap()["properties"]["segment"]
        .clone();
    let (status, _) = get_json_as(
        api,
        &format!("/api/v1/segments/{green_segment}"),
        Some(ACME_TOKEN),
    )
    .await;
    assert_eq!(
        status, 404,
        "another contractor's street does not exist for acme"
    );
    let (status, _) = get_json_as(
        api,
        &format!("/api/v1/segments/{green_segment}"),
        Some(GREEN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let (_, acme_map) = get_json_as(api, "/api/v1/coverage/segments", Some(ACME_TOKEN)).await;
    assert!(acme_map["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["properties"]["contractor"] == "acme-cleaning"));

    // Only inspectors and admins submit samples.
    let sample = |id: &str| {
        json!({"device_id": "app-1", "sample_id": id, "time": jiff::Timestamp::now().to_string(),
               "lat": 32.0, "lon": 120.86, "grams": 3.0, "inspector": "insp-1"})
    };
    for (token, expected) in [
        (DISPATCHER_TOKEN, 403),
        (ACME_TOKEN, 403),
        (ADMIN_TOKEN, 201),
    ] {
        let (status, body) = post_json_as(api, "/api/v1/samples", &sample(token), token).await;
        assert_eq!(status, expected, "{token}: {body}");
    }
    // An inspector's token is who it says: it cannot submit as another inspector or device
    // (403, nothing stored); leaving them out, the sample is its own.
    let (status, body) =
        post_json_as(api, "/api/v1/samples", &sample("S-other"), INSPECTOR_TOKEN).await;
    assert_eq!(status, 403, "{body}");
    let mut own = sample("S-own");
    own.as_object_mut().unwrap().remove("inspector");
    own.as_object_mut().unwrap().remove("device_id");
    let (status, body) = post_json_as(api, "/api/v1/samples", &own, INSPECTOR_TOKEN).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["inspector"], &body["device_id"]),
        (&json!("inspector"), &json!("app-inspector")),
        "{body}"
    );
    let (_, samples) = get_json(api, "/api/v1/samples").await;
    let ids: Vec<&str> = samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["sample_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"S-own") && !ids.contains(&"S-other"),
        "{ids:?}"
    );
    // Its provenance is the token that submitted it.
    let own = samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sample_id"] == "S-own")
        .unwrap();
    assert_eq!(
        (
            &own["source"]["trust"],
            &own["source"]["via"],
            &own["source"]["principal"]
        ),
        (&json!("token"), &json!("api"), &json!("inspector")),
        "{own}"
    );
    stack.stop().await.unwrap();
}
