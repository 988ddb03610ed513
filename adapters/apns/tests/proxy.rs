//! `HTTPS_PROXY` / `NO_PROXY`: connections tunnel through an HTTP proxy (CONNECT) unless the
//! host is excluded. A test binary of its own: it sets the process's environment.

mod common;

use std::sync::{Arc, Mutex};

use common::{builder, endpoint, key, push, token_mock, visual};
use tidings::PushChannel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A CONNECT proxy on 127.0.0.1 that records each CONNECT request's head.
async fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("a loopback port for the proxy");
    let port = listener.local_addr().expect("the proxy's address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                log.lock().expect("the proxy's log").push(head);
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn connections_tunnel_through_the_https_proxy_unless_no_proxy_excludes_the_host() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let (port, seen) = connect_proxy().await;
    for name in [
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
        "https_proxy",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var(
        "HTTPS_PROXY",
        format!("http://user:secret@127.0.0.1:{port}"),
    );

    let channel = builder(&mock, "chat", &k).build().unwrap();
    assert!(
        !format!("{channel:?}").contains("secret"),
        "no proxy password in Debug"
    );
    channel
        .send(&push(&endpoint("chat", "a0a0"), visual("via", "proxy")))
        .await
        .unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let target = mock.addr().to_string();
        assert!(
            seen[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")),
            "{}",
            seen[0]
        );
        // user:secret
        assert!(
            seen[0].contains("Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n"),
            "{}",
            seen[0]
        );
    }

    std::env::set_var("NO_PROXY", "127.0.0.1");
    let direct = builder(&mock, "chat", &k).build().unwrap();
    direct
        .send(&push(&endpoint("chat", "a1a1"), visual("direct", "x")))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "NO_PROXY: no tunnel");
    assert_eq!(mock.requests_for("a1a1").len(), 1);
}
