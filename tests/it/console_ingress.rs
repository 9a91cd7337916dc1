//! The console as a Home Assistant add-on serves it: behind HA's ingress, a
//! path-prefix proxy (`helpers::ingress`, started by the test as HA's is),
//! in headless Chromium. The page, its assets, the API, the change stream
//! and the OpenAPI link all work under the prefix; the session cookie's path
//! is the prefix; paths outside it never reach the service; and only the
//! proxy is let in without a token (`INGRESS_PROXY`), not the network.

use fantoccini::Locator;

use crate::console::{
    browser, chromedriver, console_errors, demo, shot, states_follow_the_house,
    status_shows_the_house,
};
use crate::helpers::ingress::{self, PREFIX, PROXY_ADDRESS};

#[tokio::test]
async fn under_ingress_the_console_works_behind_the_prefix_and_only_the_proxy_gets_in() {
    let Some(driver) = chromedriver() else {
        return;
    };
    let token = "ingress-test-token";
    let (_demo, base) = demo(&[("API_TOKEN", token), ("INGRESS_PROXY", PROXY_ADDRESS)]);
    let upstream = base.strip_prefix("http://").unwrap().parse().unwrap();
    let proxy = ingress::start(upstream).await;
    let under = format!("{}{PREFIX}", proxy.base);
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };

    // The network is not the proxy: straight to the service, the token is needed.
    assert_eq!(status(format!("{base}/api/v1/states")).await, 401);
    // Through the proxy HA has authenticated the person: no token, and HA's
    // host name in `Host` is taken.
    assert_eq!(status(format!("{under}/api/v1/states")).await, 200);
    // Paths outside the prefix stop at the proxy.
    assert_eq!(status(format!("{}/api/v1/states", proxy.base)).await, 404);
    assert_eq!(status(format!("{}/", proxy.base)).await, 404);
    // A login through the proxy scopes its cookie to the prefix.
    let login = http
        .post(format!("{under}/api/v1/session"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains(&format!("Path={PREFIX}/;")), "{cookie}");

    // In a browser, at the prefix as HA's panel opens it.
    let (_driver, c) = browser(&driver).await;
    c.goto(&format!("{under}/#/status")).await.unwrap();
    status_shows_the_house(&c).await;
    assert!(
        !c.find(Locator::Css("#view-login"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "no login under ingress: HA has authenticated the person"
    );
    shot(&c, "ingress-status").await;

    // The change stream reaches the states view through the proxy.
    states_follow_the_house(&c, &under).await;

    // The OpenAPI link stays under the prefix, and answers there.
    let href = c
        .find(Locator::Css("footer a"))
        .await
        .unwrap()
        .prop("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, format!("{under}/api/openapi.json"));
    assert_eq!(status(href).await, 200);
    assert_eq!(console_errors(&c, &[]).await, Vec::<String>::new());
    c.close().await.unwrap();
}
