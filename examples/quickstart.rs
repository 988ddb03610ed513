//! Tidings in 30 seconds: one user, four devices, one notification — fanned out, dismissed on
//! the phone and synced to the others, listed in history, then expired.
//!
//! In memory, no network, no setup: `cargo run --example quickstart`.

use std::error::Error;
use std::time::Duration;

use tidings::{
    ApnsEnvironment, App, EndpointRegistration, HistoryFilter, ManualClock, NewNotification,
    Platform, Push, PushAddress, PushContent, StatePatch, Tidings,
};
use tidings_memory::{MemoryStore, RecordingChannel};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // 1. Build Tidings from a store, one channel per platform and a clock. A real host uses
    //    PgStore, ApnsChannel, FcmChannel, … and SystemClock; the shapes are the same.
    let clock = ManualClock::starting_2026();
    let channels = Platform::ALL.map(RecordingChannel::new);
    let mut builder = Tidings::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .app(App::new("chat")); // shoulder-tap mode: no content through vendor push services
    for channel in &channels {
        builder = builder.channel(channel.clone());
    }
    let tidings = builder.build()?;
    let dispatcher = tidings.dispatcher();

    // 2. Alice's devices register their push addresses.
    println!("== Alice registers four devices");
    let addresses = [
        ("iPhone", PushAddress::Apns { token: "a1".repeat(32), environment: ApnsEnvironment::Production }),
        ("Android phone", PushAddress::Fcm { token: "fcm-token-of-alices-pixel".into() }),
        ("Windows PC", PushAddress::Wns { channel_uri: "https://db5p.notify.windows.com/?token=AwYAAAB".into() }),
        ("Browser", PushAddress::WebPush {
            endpoint: "https://fcm.googleapis.com/fcm/send/alices-browser".into(),
            p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4".into(),
            auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
        }),
    ];
    let mut endpoints = Vec::new();
    for (device, address) in addresses {
        let endpoint = tidings
            .register_endpoint(EndpointRegistration::new("chat", "alice", address))
            .await?;
        println!(
            "   {device:<14} -> endpoint {} on {}",
            endpoint.id,
            endpoint.platform()
        );
        endpoints.push((device, endpoint));
    }

    // 3. The host notifies the person, not a device.
    println!("\n== The host sends one notification to Alice");
    let notification = tidings
        .send(
            NewNotification::new("chat", "alice", "msg-1001")
                .title("Bob: lunch?")
                .body("12:30 at the usual place")
                .expires_in(Duration::from_secs(24 * 3600)),
        )
        .await?;
    println!(
        "   stored {} (change #{}), expires {}",
        notification.id, notification.sequence, notification.expires_at
    );
    let report = dispatcher.run_until_idle().await?;
    println!("   dispatcher: {} pushes accepted", report.accepted);
    for channel in &channels {
        for push in channel.pushes() {
            println!("   {}", describe(&push.push, &endpoints));
        }
        channel.clear();
    }
    println!("   (shoulder tap: the pushes carry ids only; each device fetches the content over the client API)");

    // 4. Alice dismisses it on her phone; her other devices are told.
    println!("\n== Alice dismisses it on her Android phone");
    let phone = endpoints[1].1.id;
    let dismissed = tidings
        .update_state(
            &"chat".into(),
            &"alice".into(),
            notification.id,
            StatePatch::dismissed(),
            Some(phone),
        )
        .await?;
    println!(
        "   state: {:?}/{:?} (change #{})",
        dismissed.state.read, dismissed.state.action, dismissed.sequence
    );
    clock.advance(Duration::from_secs(3)); // past the 2 s coalescing window
    dispatcher.run_until_idle().await?;
    for channel in &channels {
        for push in channel.pushes() {
            println!("   {}", describe(&push.push, &endpoints));
        }
        channel.clear();
    }
    println!("   (not the phone itself, and not the browser: browsers cannot take silent pushes)");

    // 5. History keeps it, dismissed, until it expires.
    println!("\n== Alice's history");
    let history = tidings
        .history(
            &"chat".into(),
            &"alice".into(),
            HistoryFilter::default(),
            None,
            50,
        )
        .await?;
    for n in &history.items {
        let title = n.visual.as_ref().map(|v| v.title.as_str()).unwrap_or("");
        println!(
            "   {:<12} {:?}/{:?}  {title:?}",
            n.app_notification_id, n.state.read, n.state.action
        );
    }

    // 6. A day later it has expired and the sweeper removes it.
    println!("\n== One day later");
    clock.advance(Duration::from_secs(24 * 3600));
    let swept = tidings.sweep().await?;
    let history = tidings
        .history(
            &"chat".into(),
            &"alice".into(),
            HistoryFilter::default(),
            None,
            50,
        )
        .await?;
    println!(
        "   sweep removed {} notification(s); history now has {} item(s)",
        swept.notifications,
        history.items.len()
    );
    Ok(())
}

fn describe(push: &Push, devices: &[(&str, tidings::Endpoint)]) -> String {
    let device = devices
        .iter()
        .find(|(_, e)| e.id == push.endpoint.id)
        .map_or("?", |(name, _)| name);
    let what = match &push.content {
        PushContent::Tap { alert: Some(alert) } => format!("visible placeholder {:?}", alert.title),
        PushContent::Tap { alert: None } => "silent".to_owned(),
        PushContent::Inline { .. } => "inline content".to_owned(),
    };
    format!(
        "{:<8} -> {device:<14} {:?} push: {what}, change #{}",
        push.endpoint.platform().as_str(),
        push.kind,
        push.sequence
    )
}
