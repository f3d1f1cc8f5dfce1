//! Crypto vectors (§5.5, §11), the decode.jsonl cross-checks and the batch-vs-single
//! differential tests.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;
use curve25519_dalek::{EdwardsPoint, Scalar};
use nanopeer::crypto::{
    BatchVerifier, CryptoError, GENESIS_AMOUNT, KeyCache, KeyPair, TorsionPolicy, VerifyingKey,
    WorkThresholds, block_hash, decode_account, deterministic_key, encode_account, encode_node_id,
    genesis_account, genesis_block, genesis_hash, verify, verify_block_signature, vote_hash,
    work_value,
};
use nanopeer::types::{Amount, BlockHash, Cookie, Network, PublicKey, Signature};
use nanopeer::wire::{Block, ChangeBlock, OpenBlock, ReceiveBlock, SendBlock, StateBlock, Vote};
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn h<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

const DEV_PRV: &str = "34F0A37AAD20F4A260F0A5B3CB3D7FB50673212263E58A380BC10474BB039CE4";
const DEV_PUB: &str = "B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0";
const DEV_GENESIS_HASH: &str = "04270D7F11C4B2B472F2854C5A59F2A7E84226CE9ED799DE75744BD7D85FC9D9";
const DEV_GENESIS_SIG: &str = "ECDA914373A2F0CA1296475BAEE40500A7F0A7AD72A5A80C81D7FAB7F6C802B2CC7DB50F5DD0FB25B2EF11761FA7344A158DD5A700B21BD47DE5BD0F63153A02";
const LIVE_PUB: &str = "E89208DD038FBB269987689621D52292AE9C35941A7484756ECCED92A65093BA";
const LIVE_GENESIS_HASH: &str = "991CF190094C00F0B68E2E5F75F6BEE95A2E0BD93CEAA4A6734DB9F19B728948";
const LIVE_GENESIS_SIG: &str = "9F0C933C8ADE004D808EA1985FA746A7E95BA2A38F867640F53EC8F180BDFE9E2C1268DEAD7C2664F356E37ABA362BC58E46DBA03E523A7B5A19E4B6EB12BB02";

fn dev_key() -> KeyPair {
    KeyPair::from_private(types_hex32(DEV_PRV))
}

fn types_hex32(s: &str) -> [u8; 32] {
    h::<BlockHash>(s).0
}

// ---------------------------------------------------------------------------------------------
// §5.5 vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn v1_dev_genesis_key_sign_verify_address_work() {
    let key = dev_key();
    assert_eq!(key.public(), h(DEV_PUB));
    assert_eq!(key.private_bytes(), &types_hex32(DEV_PRV));
    assert_eq!(
        decode_account("xrb_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo"),
        Ok(key.public())
    );
    assert_eq!(
        encode_account(&key.public()),
        "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo"
    );
    let genesis = genesis_block(Network::Dev);
    assert_eq!(block_hash(&genesis), h(DEV_GENESIS_HASH));
    let msg: BlockHash = h(DEV_GENESIS_HASH);
    let sig = key.sign(&msg.0);
    assert_eq!(
        sig,
        h(DEV_GENESIS_SIG),
        "deterministic signing is byte-exact"
    );
    assert_eq!(genesis.signature(), &sig);
    assert!(verify(&msg.0, &sig, &key.public()));
    assert_eq!(
        work_value(&BlockHash(key.public().0), 0x7b42a00ee91d5810),
        0xff1475ba5c832b89
    );
    assert!(genesis.work_value() >= WorkThresholds::DEV.epoch_1);
    // Debug shows the public key only.
    let dbg = format!("{key:?}");
    assert!(dbg.contains(DEV_PUB));
    assert!(!dbg.to_uppercase().contains(DEV_PRV));
}

#[test]
fn v2_live_genesis() {
    let pk: PublicKey = h(LIVE_PUB);
    assert_eq!(
        encode_account(&pk),
        "nano_3t6k35gi95xu6tergt6p69ck76ogmitsa8mnijtpxm9fkcm736xtoncuohr3"
    );
    let genesis = genesis_block(Network::Live);
    assert_eq!(genesis.hash(), h(LIVE_GENESIS_HASH));
    let sig: Signature = h(LIVE_GENESIS_SIG);
    assert!(verify(&genesis.hash().0, &sig, &pk));
    assert_eq!(genesis.work_value(), 0xfffffff4000d3dac);
    assert_eq!(
        work_value(&BlockHash(pk.0), 0x62f05417dd3fb691),
        0xfffffff4000d3dac
    );
}

#[test]
fn v3_first_live_send() {
    let block = Block::Send(SendBlock {
        previous: h(LIVE_GENESIS_HASH),
        destination: decode_account(
            "nano_13ezf4od79h1tgj9aiu4djzcmmguendtjfuhwfukhuucboua8cpoihmh8byo",
        )
        .unwrap(),
        balance: Amount(u128::from_str_radix("FD89D89D89D89D89D89D89D89D89D89D", 16).unwrap()),
        signature: h(
            "5B11B17DB9C8FE0CC58CAC6A6EECEF9CB122DA8A81C6D3DB1B5EE3AB065AA8F8CB1D6765C8EB91B58530C5FF5987AD95E6D34BB57F44257E20795EE412E61600",
        ),
        work: 0x3c82cc724905ee95,
    });
    let hash = block.hash();
    assert_eq!(
        hash,
        h("A170D51B94E00371ACE76E35AC81DC9405D5D04D4CEBC399AEACE07AE05DD293")
    );
    assert!(verify(&hash.0, block.signature(), &h(LIVE_PUB)));
    assert_eq!(block.work_value(), 0xffffffdc89d4625e);
    assert_eq!(block.work_value(), 18446743921403126366);
    assert!(WorkThresholds::LIVE.validate_entry(&block));
    // A legacy send names no signer.
    assert_eq!(verify_block_signature(&block, Network::Live), None);
}

#[test]
fn v4_v5_donna_only_signatures() {
    let pk: PublicKey = h("49FEC0594D6E7F7040312E400F5F5285CB51FAF5DD8EB10CADBB02915058CCF7");
    let msg: BlockHash = h("E03D646E37DAE61E4D21281054418EF733CCFB9943B424B36B203ED063340A88");
    let sig: Signature = h(
        "3C14AF3E82BFC7DFD04EDF1639CDBF3580C02450CED478F269A4169A941617097D73A77721B62847558659371DBC3F6830724A7A55117750E5743562D1CF671E",
    );
    assert!(verify(&msg.0, &sig, &pk));
    let identity: PublicKey = h("0100000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(
        encode_account(&identity),
        "nano_11a11111111111111111111111111111111111111111111111116iq5p4i8"
    );
    let msg5: BlockHash = h("150AFD70BD1E9845715F91D7CD7D5EE2683668199F19B4DF533FC7802CE07CA2");
    let sig5: Signature = h(
        "1A8CFB63796525E47EBAF0B8696D95E2B893CBCC13454CB34530A59A3725C1A9FEA02A1F072BADE964BE5378CFA5AD50E743F167987444B1C9E3D7B3E6009F07",
    );
    assert!(verify(&msg5.0, &sig5, &identity));
    // Through a cached key and through the batch (fresh and cached pushes) too.
    let mut cache = KeyCache::new(8);
    assert!(cache.verify(&msg.0, &sig, &pk));
    assert!(cache.verify(&msg5.0, &sig5, &identity));
    assert!(cache.get(&identity).unwrap().is_small_order());
    let mut batch = BatchVerifier::new(16);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for _ in 0..3 {
        batch.push(&pk, &msg.0, &sig).unwrap();
        batch.push(&identity, &msg5.0, &sig5).unwrap();
        batch
            .push_key(&VerifyingKey::from_public(&pk).unwrap(), &msg.0, &sig)
            .unwrap();
    }
    assert_eq!(batch.verify(&mut rng), &[true; 9]);
    // One flipped bit each breaks them.
    let mut bad = sig5;
    bad.0[0] ^= 1;
    assert!(!verify(&msg5.0, &bad, &identity));
    let mut bad = sig;
    bad.0[40] ^= 1;
    assert!(!verify(&msg.0, &bad, &pk));
}

#[test]
fn block_hash_vectors() {
    let state = Block::State(StateBlock {
        account: decode_account("xrb_15nhh1kzw3x8ohez6s75wy3jr6dqgq65oaede1fzk5hqxk4j8ehz7iqtb3to")
            .unwrap(),
        previous: h("FEFBCE274E75148AB31FF63EFB3082EF1126BF72BF3FA9C76A97FD5A9F0EBEC5"),
        representative: decode_account(
            "xrb_1stofnrxuz3cai7ze75o174bpm7scwj9jn3nxsn8ntzg784jf1gzn1jjdkou",
        )
        .unwrap(),
        balance: Amount(2251569974100400000000000000000000),
        link: h("E16DD58C1EFA8B521545B0A74375AA994D9FC43828A4266D75ECF57F07A7EE86"),
        signature: Signature::ZERO,
        work: 0,
    });
    assert_eq!(
        state.hash(),
        h("2D243F8F92CDD0AD94A1D456A6B15F3BE7A6FCBD98D4C5831D06D15C818CD81F")
    );
    let send = Block::Send(SendBlock {
        previous: h("F685856D73A488894F7F3A62BC3A88E17E985F9969629FF3FDD4A0D4FD823F24"),
        destination: decode_account(
            "xrb_1gys8r4crpxhp94n4uho5cshaho81na6454qni5gu9n53gksoyy1wcd4udyb",
        )
        .unwrap(),
        balance: Amount(u128::from_str_radix("00F035A9C7D818E7C34148C524FFFFEE", 16).unwrap()),
        signature: Signature::ZERO,
        work: 0,
    });
    assert_eq!(
        send.hash(),
        h("4560E7B1F3735D082700CFC2852F5D1F378F7418FD24CEF1AD45AB69316F15CD")
    );
    let change = Block::Change(ChangeBlock {
        previous: h("088EE46429CA936F76C4EAA20B97F6D33E5D872971433EE0C1311BCB98764456"),
        representative: decode_account(
            "xrb_3rropjiqfxpmrrkooej4qtmm1pueu36f9ghinpho4esfdor8785a455d16nf",
        )
        .unwrap(),
        signature: Signature::ZERO,
        work: 0,
    });
    assert_eq!(
        change.hash(),
        h("13552AC3928E93B5C6C215F61879358E248D4A5246B8B3D1EEC5A566EDCEE077")
    );
    let receive = Block::Receive(ReceiveBlock {
        previous: h("59660153194CAC5DAC08509D87970BF86F6AEA943025E2A7ED7460930594950E"),
        source: h("7B2B0A29C1B235FDF9B4DEF2984BB3573BD1A52D28246396FBB3E4C5FE662135"),
        signature: Signature::ZERO,
        work: 0,
    });
    assert_eq!(
        receive.hash(),
        h("6C004BF911D9CF2ED75CF6EC45E795122AD5D093FF5A83EDFBA43EC4A3EDC722")
    );
    // Signature and work are not hashed.
    let mut other = receive.clone();
    if let Block::Receive(b) = &mut other {
        b.work = 99;
        b.signature.0[0] = 1;
    }
    assert_eq!(other.hash(), receive.hash());
}

#[test]
fn address_vectors() {
    let zero = PublicKey::ZERO;
    assert_eq!(
        encode_account(&zero),
        "nano_1111111111111111111111111111111111111111111111111111hifc8npp"
    );
    let ff = PublicKey([0xFF; 32]);
    assert_eq!(
        encode_account(&ff),
        "nano_3zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzc3yoon41"
    );
    let k: PublicKey = h("E7F5F39D52AC32ADF978BBCF6EA50C7A5FBBDDCADE965C542808ADAE9DEF6B20");
    let text = "nano_3szoyggo7d3koqwqjgyhftkirykzqhgwoqnpdjc4i47fotgyyts1j8ab3mti";
    assert_eq!(encode_account(&k), text);
    for key in [zero, ff, k] {
        let a = encode_account(&key);
        let body = &a[5..];
        for prefix in ["nano_", "nano-", "xrb_", "xrb-", "node_"] {
            assert_eq!(
                decode_account(&format!("{prefix}{body}")),
                Ok(key),
                "{prefix}"
            );
        }
        assert_eq!(encode_node_id(&key), format!("node_{body}"));
        assert_eq!(key.to_node_id(), format!("node_{body}"));
        assert_eq!(PublicKey::from_account(&key.to_account()), Ok(key));
    }
    assert_eq!(
        decode_account("nano_1111111111111111111111111111111111111111111111111111hifc8npq"),
        Err(CryptoError::AccountChecksum)
    );
    assert_eq!(
        decode_account("ban_1111111111111111111111111111111111111111111111111111hifc8npp"),
        Err(CryptoError::AccountPrefix)
    );
}

#[test]
fn seed_derivation() {
    let mut seed = [0u8; 32];
    seed[31] = 1;
    assert_eq!(
        deterministic_key(&seed, 3),
        types_hex32("89A518E3B70A0843DE8470F87FF851F9C980B1B2802267A05A089677B8FA1926")
    );
    let prv = deterministic_key(&[0u8; 32], 0);
    assert_eq!(
        prv,
        types_hex32("9F0E444C69F77A49BD0BE89DB92C38FE713E0963165CCA12FAF5712D7657120F")
    );
    let pair = KeyPair::from_private(prv);
    assert_eq!(
        pair.public(),
        h("C008B814A7D269A1FA3C6528B19201A24D797912DB9996FF02A1FF356E45552B")
    );
    assert_eq!(
        encode_account(&pair.public()),
        "nano_3i1aq1cchnmbn9x5rsbap8b15akfh7wj7pwskuzi7ahz8oq6cobd99d4r3b7"
    );
}

#[test]
fn genesis_per_network() {
    assert_eq!(GENESIS_AMOUNT, Amount(u128::MAX));
    let accounts = [
        (
            Network::Live,
            "nano_3t6k35gi95xu6tergt6p69ck76ogmitsa8mnijtpxm9fkcm736xtoncuohr3",
        ),
        (
            Network::Beta,
            "nano_1betag7az9wk6rbis38s1d35hdsycz1bi95xg4g4j148p6afjk7embcurda4",
        ),
        (
            Network::Dev,
            "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo",
        ),
        (
            Network::Test,
            "nano_1jg8zygjg3pp5w644emqcbmjqpnzmubfni3kfe1s8pooeuxsw49fdq1mco9j",
        ),
    ];
    for (network, account) in accounts {
        let block = genesis_block(network);
        let Block::Open(open) = &block else {
            panic!("genesis is an open block")
        };
        let acct = genesis_account(network);
        assert_eq!(encode_account(&acct), account, "{network}");
        assert_eq!(open.account, acct);
        assert_eq!(open.representative, acct);
        assert_eq!(open.source.0, acct.0);
        assert_eq!(block.hash(), genesis_hash(network), "{network}");
        // The signature over the computed hash checks the hash independently.
        assert!(verify(&block.hash().0, &open.signature, &acct), "{network}");
        assert_eq!(verify_block_signature(&block, network), Some(true));
    }
    // Genesis work is never validated: beta's and test's are below their thresholds.
    // Values cross-checked with Python's hashlib.blake2b.
    let work = |n| genesis_block(n).work_value();
    assert_eq!(work(Network::Live), 0xfffffff4000d3dac);
    assert_eq!(work(Network::Dev), 0xff1475ba5c832b89);
    assert_eq!(work(Network::Beta), 0x4d48e01e9f784fc5);
    assert_eq!(work(Network::Test), 0xfedda7bcc893d4c3);
    assert_eq!(genesis_hash(Network::Live), h(LIVE_GENESIS_HASH));
    assert_eq!(genesis_hash(Network::Dev), h(DEV_GENESIS_HASH));
    assert_eq!(
        genesis_hash(Network::Test),
        h("B1D60C0B886B57401EF5A1DAA04340E53726AA6F4D706C085706F31BBD100CEE")
    );
}

#[test]
fn state_block_signature_and_epoch_signer() {
    let key = dev_key();
    let mut block = StateBlock {
        account: key.public(),
        previous: h(DEV_GENESIS_HASH),
        representative: key.public(),
        balance: Amount(1000),
        link: BlockHash([3; 32]),
        signature: Signature::ZERO,
        work: 0,
    };
    block.signature = key.sign(&block_hash(&Block::State(block.clone())).0);
    assert_eq!(
        verify_block_signature(&Block::State(block.clone()), Network::Dev),
        Some(true)
    );
    // An epoch block on live signed by the account is not accepted for a foreign account,
    // but a dev epoch block is signed by the dev genesis key (the epoch signer).
    let other = KeyPair::from_private([9; 32]);
    let mut epoch = block.clone();
    epoch.account = other.public();
    epoch.link = nanopeer::crypto::epoch_link(2);
    epoch.signature = key.sign(&block_hash(&Block::State(epoch.clone())).0);
    assert_eq!(
        verify_block_signature(&Block::State(epoch.clone()), Network::Dev),
        Some(true)
    );
    assert_eq!(
        verify_block_signature(&Block::State(epoch.clone()), Network::Live),
        Some(false)
    );
    // nn@HEAD common.cpp: the live epoch v2 signer.
    assert_eq!(
        nanopeer::crypto::epoch_signer(Network::Live, 2),
        Some(
            decode_account("nano_3qb6o6i1tkzr6jwr5s7eehfxwg9x6eemitdinbpi7u8bjjwsgqfj4wzser3x")
                .unwrap()
        )
    );
    assert_eq!(
        nanopeer::crypto::epoch_signer(Network::Live, 1),
        Some(genesis_account(Network::Live))
    );
    let mut tampered = block;
    tampered.balance = Amount(1001);
    assert_eq!(
        verify_block_signature(&Block::State(tampered), Network::Dev),
        Some(false)
    );
}

// ---------------------------------------------------------------------------------------------
// §11 worked examples
// ---------------------------------------------------------------------------------------------

fn cookie_01_20() -> Cookie {
    let mut c = [0u8; 32];
    for (i, b) in c.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    Cookie(c)
}

#[test]
fn section_11_handshake_signatures() {
    let key = dev_key();
    let cookie = cookie_01_20();
    let v1 = key.sign(&cookie.0);
    assert_eq!(
        v1,
        h(
            "A7254E3007652C2F2CFE642C94FAEA041171EF1F7A45491B64560650E84506FFA61552D59259A73E842C3EB21F8051C51938951ABA384DD5E69EF507CE7CA308"
        )
    );
    assert!(verify(&cookie.0, &v1, &key.public()));
    let mut data = Vec::new();
    data.extend_from_slice(&cookie.0);
    data.extend_from_slice(&[0xAA; 32]);
    data.extend_from_slice(&genesis_hash(Network::Live).0);
    let v2 = key.sign(&data);
    assert_eq!(
        v2,
        h(
            "4C6A11AA18278F238BFBAC3B4BF08D1B869072D5B95BFB7C5BBDBAA2495842389ABB8836249A5254147112B9153923EB21434A5C103174E2BA5F89F1A48F4D0A"
        )
    );
    assert!(verify(&data, &v2, &key.public()));
    // A modified cookie, salt or genesis each fails (handshake.signature_v2).
    for at in [0, 32, 64, 95] {
        let mut d = data.clone();
        d[at] ^= 0x80;
        assert!(!verify(&d, &v2, &key.public()), "byte {at}");
    }
    let other = KeyPair::from_private([1; 32]);
    assert!(!verify(&data, &v2, &other.public()));
}

#[test]
fn section_11_votes() {
    let key = dev_key();
    let genesis: BlockHash = h(LIVE_GENESIS_HASH);
    let final_hash = vote_hash(&[genesis], u64::MAX);
    assert_eq!(
        final_hash,
        h("066AD6148F03EA2FDCA848709C56216EE3AC135B63770095A688121FB04A82CC")
    );
    let sig = key.sign(&final_hash.0);
    assert_eq!(
        sig,
        h(
            "CCFCBF0F451A69BA8C391A40D89381A068EADC6A80DB8F04B7F12502C871419C28DF4A18F072857166D723B3827F31CE4C5E5EC2A706A53C4DE8CA7C47A81102"
        )
    );
    let vote = Vote {
        account: key.public(),
        signature: sig,
        timestamp: u64::MAX,
        hashes: vec![genesis],
    };
    assert_eq!(vote.hash(), final_hash);
    assert!(vote.verify());
    assert_eq!(
        vote_hash(&[genesis], 0x18bcfe56804),
        h("33D0A2610E9C8A6CAC779A33236D6A87B9D92E079F1DAE0E1B58F5C72937DB1D")
    );
    let mut stale = vote.clone();
    stale.timestamp = 0x18bcfe56804;
    assert!(!stale.verify());
}

// ---------------------------------------------------------------------------------------------
// decode.jsonl: signatures, hashes and work made by an independent implementation
// ---------------------------------------------------------------------------------------------

fn vectors() -> Vec<serde_json::Value> {
    include_str!("data/decode.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn jh<T: std::str::FromStr>(v: &serde_json::Value) -> T
where
    T::Err: std::fmt::Debug,
{
    v.as_str().unwrap().parse().unwrap()
}

/// (key, message, signature, expected validity) of every signed item in decode.jsonl.
fn signed_items() -> Vec<(PublicKey, Vec<u8>, Signature, bool)> {
    let mut out = Vec::new();
    for v in vectors() {
        let e = &v["expect"];
        let raw = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        match e["type"].as_str() {
            Some("confirm_ack") => {
                let hashes: Vec<BlockHash> =
                    e["hashes"].as_array().unwrap().iter().map(jh).collect();
                let ts = e["timestamp"].as_u64().unwrap();
                let vh = vote_hash(&hashes, ts);
                assert_eq!(vh, jh::<BlockHash>(&e["vote_hash"]), "{}", v["name"]);
                let vote = Vote {
                    account: jh(&e["account"]),
                    signature: jh(&e["signature"]),
                    timestamp: ts,
                    hashes,
                };
                let valid = e["signature_valid"].as_bool().unwrap();
                assert_eq!(vote.verify(), valid, "{}", v["name"]);
                out.push((vote.account, vh.0.to_vec(), vote.signature, valid));
            }
            Some("node_id_handshake") if !e["response"].is_null() => {
                let r = &e["response"];
                let cookie: Cookie = jh(&v["cookie"]);
                let mut msg = cookie.0.to_vec();
                if r["v2"].as_bool().unwrap() {
                    msg.extend_from_slice(&jh::<Cookie>(&r["salt"]).0);
                    msg.extend_from_slice(&jh::<BlockHash>(&r["genesis"]).0);
                }
                let valid = e["signature_valid"].as_bool().unwrap();
                out.push((jh(&r["node_id"]), msg, jh(&r["signature"]), valid));
            }
            Some("telemetry_ack") => {
                let payload = &raw[8..];
                let valid = e["signature_valid"].as_bool().unwrap();
                let key: PublicKey = jh(&e["node_id"]);
                assert_eq!(&payload[64..96], &key.0);
                out.push((key, payload[64..].to_vec(), jh(&e["signature"]), valid));
            }
            Some("publish") => {
                let b = &e["block"];
                let amount = |x: &serde_json::Value| Amount(x.as_str().unwrap().parse().unwrap());
                let sig: Signature = jh(&b["signature"]);
                let work = u64::from_str_radix(b["work"].as_str().unwrap(), 16).unwrap();
                let block = match b["type"].as_str().unwrap() {
                    "state" => Block::State(StateBlock {
                        account: jh(&b["account"]),
                        previous: jh(&b["previous"]),
                        representative: jh(&b["representative"]),
                        balance: amount(&b["balance"]),
                        link: jh(&b["link"]),
                        signature: sig,
                        work,
                    }),
                    "send" => Block::Send(SendBlock {
                        previous: jh(&b["previous"]),
                        destination: jh(&b["destination"]),
                        balance: amount(&b["balance"]),
                        signature: sig,
                        work,
                    }),
                    "receive" => Block::Receive(ReceiveBlock {
                        previous: jh(&b["previous"]),
                        source: jh(&b["source"]),
                        signature: sig,
                        work,
                    }),
                    "open" => Block::Open(OpenBlock {
                        source: jh(&b["source"]),
                        representative: jh(&b["representative"]),
                        account: jh(&b["account"]),
                        signature: sig,
                        work,
                    }),
                    "change" => Block::Change(ChangeBlock {
                        previous: jh(&b["previous"]),
                        representative: jh(&b["representative"]),
                        signature: sig,
                        work,
                    }),
                    other => panic!("block type {other}"),
                };
                let name = &v["name"];
                assert_eq!(block.hash(), jh::<BlockHash>(&b["hash"]), "{name}");
                let diff = u64::from_str_radix(b["difficulty"].as_str().unwrap(), 16).unwrap();
                assert_eq!(block.work_value(), diff, "{name}");
                let network: Network = v["network"].as_str().unwrap().parse().unwrap();
                assert_eq!(
                    WorkThresholds::for_network(network).validate_entry(&block),
                    b["work_valid"].as_bool().unwrap(),
                    "{name}"
                );
                if let Some(valid) = b["signature_valid"].as_bool() {
                    assert_eq!(
                        verify_block_signature(&block, network),
                        Some(valid),
                        "{name}"
                    );
                    let key = block.signing_account().unwrap();
                    out.push((key, block.hash().0.to_vec(), sig, valid));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn decode_vectors_single_cached_and_batch() {
    let items = signed_items();
    assert!(items.len() > 60, "{} signed items", items.len());
    assert!(items.iter().any(|i| !i.3) && items.iter().any(|i| i.3));
    let mut cache = KeyCache::new(4);
    for (key, msg, sig, valid) in &items {
        assert_eq!(verify(msg, sig, key), *valid);
        assert_eq!(cache.verify(msg, sig, key), *valid);
    }
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for policy in [TorsionPolicy::Fast, TorsionPolicy::Exact] {
        let mut batch = BatchVerifier::with_policy(items.len(), policy);
        for (key, msg, sig, _) in &items {
            batch.push(key, msg, sig).unwrap();
        }
        let expect: Vec<bool> = items.iter().map(|i| i.3).collect();
        assert_eq!(batch.verify(&mut rng), &expect[..]);
        // All-valid subset: one passing batch, no fallback.
        let before = batch.stats();
        for (key, msg, sig, _) in items.iter().filter(|i| i.3) {
            batch.push(key, msg, sig).unwrap();
        }
        assert!(batch.verify(&mut rng).iter().all(|&r| r));
        assert_eq!(batch.stats().failed_batches, before.failed_batches);
    }
}

// ---------------------------------------------------------------------------------------------
// Batch vs single: differential tests with adversarial items
// ---------------------------------------------------------------------------------------------

fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut st = blake2b_simd::State::new();
    st.update(r).update(a).update(msg);
    Scalar::from_bytes_mod_order_wide(st.finalize().as_array())
}

fn sig_of(r: &[u8; 32], s: &[u8; 32]) -> Signature {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(r);
    out[32..].copy_from_slice(s);
    Signature(out)
}

/// Signs with secret scalar `a` for key bytes `a_bytes` (whose point is a·B + torsion), nonce
/// point r·B + `t_r`: S = r + k·a.
fn raw_sign(
    a: &Scalar,
    a_bytes: &[u8; 32],
    r: &Scalar,
    t_r: &EdwardsPoint,
    msg: &[u8],
) -> Signature {
    let big_r = (EdwardsPoint::mul_base(r) + t_r).compress().to_bytes();
    let k = challenge(&big_r, a_bytes, msg);
    sig_of(&big_r, &(r + k * a).to_bytes())
}

/// A signature that donna accepts for a key with torsion `t_a` (k·t_a + t_r = identity), found
/// by trying nonces.
fn raw_sign_valid(
    rng: &mut ChaCha20Rng,
    a: &Scalar,
    a_bytes: &[u8; 32],
    t_a: &EdwardsPoint,
    msg: &[u8],
) -> Signature {
    loop {
        let r = Scalar::from_bytes_mod_order(rng.random());
        let j = rng.random_range(0..8u8);
        let t_r = -(t_a * Scalar::from(j));
        let sig = raw_sign(a, a_bytes, &r, &t_r, msg);
        let mut rb = [0u8; 32];
        rb.copy_from_slice(&sig.0[..32]);
        let k = challenge(&rb, a_bytes, msg);
        if (t_a * k + t_r).is_identity() {
            return sig;
        }
    }
}

/// Every encoding (canonical or not) that decompresses to `p`.
fn encodings(p: &EdwardsPoint) -> Vec<[u8; 32]> {
    let canon = p.compress().to_bytes();
    let mut out = vec![canon];
    let mut y = canon;
    y[31] &= 0x7F;
    let mut y_signed = y;
    y_signed[31] |= 0x80;
    let mut candidates = vec![y, y_signed];
    // y + p, when y < 19.
    if y[1..].iter().all(|&b| b == 0) && y[0] < 19 {
        let mut yp = [0xFFu8; 32];
        yp[31] = 0x7F;
        yp[0] = 0xED + y[0];
        candidates.push(yp);
        let mut yps = yp;
        yps[31] |= 0x80;
        candidates.push(yps);
    }
    for c in candidates {
        if c != canon
            && CompressedEdwardsY(c).decompress().map(|q| q.compress()) == Some(p.compress())
        {
            out.push(c);
        }
    }
    out
}

/// Encodings y + p (y < 19) that decompress to points of large order.
fn large_order_non_canonical() -> Vec<[u8; 32]> {
    (0u8..19)
        .filter_map(|y| {
            let mut enc = [0xFFu8; 32];
            enc[31] = 0x7F;
            enc[0] = 0xED + y;
            let p = CompressedEdwardsY(enc).decompress()?;
            (!p.is_small_order()).then_some(enc)
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Case {
    key: PublicKey,
    msg: Vec<u8>,
    sig: Signature,
}

const KINDS: u8 = 19;

/// Builds one adversarial item of the given kind.
fn make_case(kind: u8, seed: u64) -> Case {
    make_case_with(kind, seed, None)
}

/// As [`make_case`], with the honest key pair taken from a small shared set when `shared` is
/// given, so batches hold several items of one key.
fn make_case_with(kind: u8, seed: u64, shared: Option<u8>) -> Case {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let msg_len = [32usize, 96, 138][rng.random_range(0..3)];
    let mut msg = vec![0u8; msg_len];
    rng.fill_bytes(&mut msg);
    let own: [u8; 32] = rng.random();
    let pair = KeyPair::from_private(shared.map_or(own, |k| [k; 32]));
    let a_scalar = {
        // The secret scalar of `pair`, recomputed the same way (clamped, mod L).
        let hsh = blake2b_simd::blake2b(pair.private_bytes());
        let mut a = [0u8; 32];
        a.copy_from_slice(&hsh.as_bytes()[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    };
    let torsion = EIGHT_TORSION[rng.random_range(1..8)];
    let honest = |msg: &[u8]| pair.sign(msg);
    match kind {
        // Honest signature.
        0 => Case {
            key: pair.public(),
            sig: honest(&msg),
            msg,
        },
        // Wrong key.
        1 => Case {
            key: KeyPair::from_private(rng.random()).public(),
            sig: honest(&msg),
            msg,
        },
        // Flipped message bit.
        2 => {
            let sig = honest(&msg);
            let bit = rng.random_range(0..msg.len() * 8);
            msg[bit / 8] ^= 1 << (bit % 8);
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // Flipped signature bit (R or S).
        3 => {
            let mut sig = honest(&msg);
            let bit = rng.random_range(0..512);
            sig.0[bit / 8] ^= 1 << (bit % 8);
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // S ≥ 2^253.
        4 => {
            let mut sig = honest(&msg);
            sig.0[63] |= [0x20, 0x40, 0x80, 0xE0][rng.random_range(0..4)];
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // S + L (≥ L, < 2^253): valid for donna.
        5 => {
            let mut sig = honest(&msg);
            let mut carry = 0u16;
            let l = [
                0xedu8, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde,
                0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            for (s_byte, l_byte) in sig.0[32..].iter_mut().zip(l) {
                let t = u16::from(*s_byte) + u16::from(l_byte) + carry;
                *s_byte = t as u8;
                carry = t >> 8;
            }
            assert_eq!(sig.0[63] & 0xE0, 0);
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // Non-canonical R encoding of a small-order point; S = k·a would make the canonical
        // encoding of the identity valid, so single verification must still reject.
        6 => {
            let encs: Vec<[u8; 32]> = EIGHT_TORSION
                .iter()
                .flat_map(|t| encodings(t).split_off(1))
                .collect();
            let r = encs[rng.random_range(0..encs.len())];
            let k = challenge(&r, &pair.public().0, &msg);
            let s = if rng.random() {
                k * a_scalar
            } else {
                Scalar::from(rng.random::<u64>())
            };
            Case {
                key: pair.public(),
                msg,
                sig: sig_of(&r, &s.to_bytes()),
            }
        }
        // Non-canonical R bytes with y ≥ p that are not points / other y values.
        7 => {
            let mut r = [0xFFu8; 32];
            r[31] = if rng.random() { 0x7F } else { 0xFF };
            r[0] = 0xED + rng.random_range(0..19u8);
            let mut sig = honest(&msg);
            sig.0[..32].copy_from_slice(&r);
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // Small-order key (every torsion point, every encoding), donna-valid signature.
        8 | 9 => {
            let t = EIGHT_TORSION[rng.random_range(0..8)];
            let encs = encodings(&t);
            let a_bytes = encs[rng.random_range(0..encs.len())];
            let sig = if kind == 8 {
                raw_sign_valid(&mut rng, &Scalar::ZERO, &a_bytes, &t, &msg)
            } else {
                // R = r·B − j·T with a random j: D = (j − k)·T, a pure torsion point unless
                // k ≡ j; anyone can make these (a = 0), so they must never reach the batch.
                let r = Scalar::from_bytes_mod_order(rng.random());
                let j = Scalar::from(rng.random_range(0..8u8));
                raw_sign(&Scalar::ZERO, &a_bytes, &r, &-(t * j), &msg)
            };
            Case {
                key: PublicKey(a_bytes),
                msg,
                sig,
            }
        }
        // Small-order R (canonical encodings) with an honest key: R = identity and S = k·a is
        // valid; other torsion points are not.
        10 => {
            let t = EIGHT_TORSION[rng.random_range(0..8)];
            let r = t.compress().to_bytes();
            let k = challenge(&r, &pair.public().0, &msg);
            Case {
                key: pair.public(),
                msg,
                sig: sig_of(&r, &(k * a_scalar).to_bytes()),
            }
        }
        // Mixed-order key a·B + T, donna-valid signature (torsion in R cancels k·T).
        11 => {
            let point = EdwardsPoint::mul_base(&a_scalar) + torsion;
            let a_bytes = point.compress().to_bytes();
            let sig = raw_sign_valid(&mut rng, &a_scalar, &a_bytes, &torsion, &msg);
            Case {
                key: PublicKey(a_bytes),
                msg,
                sig,
            }
        }
        // Mixed-order key, honest nonce: valid iff k·T = identity; otherwise a residual item.
        12 => {
            let point = EdwardsPoint::mul_base(&a_scalar) + torsion;
            let a_bytes = point.compress().to_bytes();
            let r = Scalar::from_bytes_mod_order(rng.random());
            let sig = raw_sign(&a_scalar, &a_bytes, &r, &EdwardsPoint::default(), &msg);
            Case {
                key: PublicKey(a_bytes),
                msg,
                sig,
            }
        }
        // Mixed-order key with a flipped message: wrong in the prime-order part.
        13 => {
            let point = EdwardsPoint::mul_base(&a_scalar) + torsion;
            let a_bytes = point.compress().to_bytes();
            let sig = raw_sign_valid(&mut rng, &a_scalar, &a_bytes, &torsion, &msg);
            msg[0] ^= 4;
            Case {
                key: PublicKey(a_bytes),
                msg,
                sig,
            }
        }
        // Mixed-order R crafted by the key holder: D = −T, single rejects (residual item).
        14 => {
            let r = Scalar::from_bytes_mod_order(rng.random());
            let sig = raw_sign(&a_scalar, &pair.public().0, &r, &torsion, &msg);
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // Mixed-order R with a wrong S: prime-order part wrong as well.
        15 => {
            let r = Scalar::from_bytes_mod_order(rng.random());
            let mut sig = raw_sign(&a_scalar, &pair.public().0, &r, &torsion, &msg);
            sig.0[33] ^= 1;
            Case {
                key: pair.public(),
                msg,
                sig,
            }
        }
        // The identity key: R = S·B is valid for any message.
        16 => {
            let s = Scalar::from_bytes_mod_order(rng.random());
            let r = EdwardsPoint::mul_base(&s).compress().to_bytes();
            let mut key = [0u8; 32];
            key[0] = 1;
            let mut sig = sig_of(&r, &s.to_bytes());
            if rng.random() {
                sig.0[5] ^= 2;
            }
            Case {
                key: PublicKey(key),
                msg,
                sig,
            }
        }
        // A key that is not a curve point.
        17 => {
            let mut key: [u8; 32] = rng.random();
            while CompressedEdwardsY(key).decompress().is_some() {
                key = rng.random();
            }
            Case {
                key: PublicKey(key),
                sig: honest(&msg),
                msg,
            }
        }
        // A non-canonical encoding (y + p) of a large-order point with a small y: it
        // decompresses and is hashed as given; nobody knows its secret, so S is random.
        _ => {
            let encs = large_order_non_canonical();
            let key = encs[rng.random_range(0..encs.len())];
            let mut sig = honest(&msg);
            if rng.random() {
                sig.0[..32].copy_from_slice(&pair.public().0);
            }
            Case {
                key: PublicKey(key),
                sig,
                msg,
            }
        }
    }
}

/// True when `c` is an item the Fast batch may judge differently from single verification:
/// canonical R and D = S·B − k·A − R a non-identity point of small order (module docs).
fn is_residual(c: &Case) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&c.sig.0[..32]);
    let (Some(a), Some(rp)) = (
        CompressedEdwardsY(c.key.0).decompress(),
        CompressedEdwardsY(r).decompress(),
    ) else {
        return false;
    };
    // Small-order A or R go to single verification, which is exact.
    if rp.compress().to_bytes() != r
        || c.sig.0[63] & 0xE0 != 0
        || a.is_small_order()
        || rp.is_small_order()
    {
        return false;
    }
    let k = challenge(&r, &c.key.0, &c.msg);
    let mut s = [0u8; 32];
    s.copy_from_slice(&c.sig.0[32..]);
    let d = EdwardsPoint::vartime_double_scalar_mul_basepoint(
        &k,
        &-a,
        &Scalar::from_bytes_mod_order(s),
    ) - rp;
    !d.is_identity() && d.is_small_order()
}

fn check_batch(cases: &[Case], cached: &[bool], seed: u64) {
    let single: Vec<bool> = cases
        .iter()
        .map(|c| verify(&c.msg, &c.sig, &c.key))
        .collect();
    let residual: Vec<bool> = cases.iter().map(is_residual).collect();
    let mut cache = KeyCache::new(8);
    for (c, s) in cases.iter().zip(&single) {
        assert_eq!(cache.verify(&c.msg, &c.sig, &c.key), *s);
        if let Some(vk) = VerifyingKey::from_public(&c.key) {
            assert_eq!(vk.verify(&c.msg, &c.sig), *s);
        }
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for policy in [TorsionPolicy::Fast, TorsionPolicy::Exact] {
        let mut batch = BatchVerifier::with_policy(cases.len(), policy);
        for (c, &use_cache) in cases.iter().zip(cached) {
            match VerifyingKey::from_public(&c.key) {
                Some(vk) if use_cache => batch.push_key(&vk, &c.msg, &c.sig).unwrap(),
                _ => batch.push(&c.key, &c.msg, &c.sig).unwrap(),
            };
        }
        let got = batch.verify(&mut rng).to_vec();
        for i in 0..cases.len() {
            if policy == TorsionPolicy::Exact || !residual[i] {
                assert_eq!(
                    got[i],
                    single[i],
                    "{policy:?} item {i} of {}: {:?}",
                    cases.len(),
                    cases[i]
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn batch_equals_single(
        items in prop::collection::vec(
            (0u8..KINDS, any::<u64>(), any::<bool>(), prop::option::of(0u8..3)),
            1..40,
        ),
        seed in any::<u64>(),
    ) {
        let cases: Vec<Case> =
            items.iter().map(|&(k, s, _, key)| make_case_with(k, s, key)).collect();
        let cached: Vec<bool> = items.iter().map(|i| i.2).collect();
        check_batch(&cases, &cached, seed);
    }

    #[test]
    fn mostly_valid_batches_equal_single(
        items in prop::collection::vec(
            (0u8..KINDS, any::<u64>(), prop::option::of(0u8..3)),
            1..8,
        ),
        valid in prop::collection::vec((any::<u64>(), prop::option::of(0u8..3)), 3..30),
        seed in any::<u64>(),
    ) {
        let mut cases: Vec<Case> =
            valid.iter().map(|&(s, key)| make_case_with(0, s, key)).collect();
        cases.extend(items.iter().map(|&(k, s, key)| make_case_with(k, s, key)));
        let cached: Vec<bool> = (0..cases.len()).map(|i| i % 3 == 0).collect();
        check_batch(&cases, &cached, seed);
    }
}

#[test]
fn every_kind_behaves_as_intended() {
    // The generators make what they claim: Some(v) = single verification always gives v.
    let expected = |kind: u8| match kind {
        0 | 5 | 8 | 11 => Some(true),
        9 | 10 | 12 | 16 => None,
        _ => Some(false),
    };
    for kind in 0..KINDS {
        let results: Vec<bool> = (0..12)
            .map(|seed| {
                let c = make_case(kind, seed * 1000 + u64::from(kind));
                verify(&c.msg, &c.sig, &c.key)
            })
            .collect();
        if let Some(v) = expected(kind) {
            assert!(results.iter().all(|&r| r == v), "kind {kind}: {results:?}");
        }
    }
    assert!(!large_order_non_canonical().is_empty());
    // Non-canonical encodings exist for the small-order points with x = 0 or y < 19.
    let non_canonical: usize = EIGHT_TORSION.iter().map(|t| encodings(t).len() - 1).sum();
    assert!(non_canonical >= 4, "{non_canonical}");
    // Kind 14 is always a residual item; kind 12 sometimes.
    assert!((0..8).all(|s| is_residual(&make_case(14, s))));
    assert!((0..40).any(|s| is_residual(&make_case(12, s))));
    assert!((0..40).all(|s| !is_residual(&make_case(0, s))));
}

#[test]
fn large_batches_use_pippenger_and_stay_exact() {
    // 2n + 1 ≥ 190 points switch curve25519-dalek to Pippenger; unreduced coefficients of
    // mixed-order keys must work there as well.
    let mut cases = Vec::new();
    for i in 0..140u64 {
        let kind = match i % 7 {
            0..=3 => 0,
            4 => 11,
            5 => 5,
            _ => 8,
        };
        // Half of the honest items come from three shared keys.
        let shared = (i % 2 == 0).then_some((i % 3) as u8);
        cases.push(make_case_with(kind, 7000 + i, shared));
    }
    let cached: Vec<bool> = (0..cases.len()).map(|i| i % 4 < 2).collect();
    check_batch(&cases, &cached, 1);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for (size, use_cache) in [(cases.len(), false), (cases.len(), true), (40, true)] {
        let mut batch = BatchVerifier::new(size);
        for (c, &cache_it) in cases[..size].iter().zip(&cached) {
            match VerifyingKey::from_public(&c.key) {
                Some(vk) if use_cache && cache_it => batch.push_key(&vk, &c.msg, &c.sig),
                _ => batch.push(&c.key, &c.msg, &c.sig),
            }
            .unwrap();
        }
        assert!(batch.verify(&mut rng).iter().all(|&r| r));
        // Mixed-order keys (exact coefficients) and shared points (summed coefficients) pass
        // the batch equation itself: no fallback.
        let stats = batch.stats();
        assert_eq!(
            (stats.batches, stats.failed_batches),
            (1, 0),
            "{size} {use_cache}"
        );
    }
    let mut batch = BatchVerifier::new(cases.len());
    // One bad item makes the batch fail and every item falls back.
    cases[17].msg[0] ^= 1;
    for c in &cases {
        batch.push(&c.key, &c.msg, &c.sig).unwrap();
    }
    let got = batch.verify(&mut rng).to_vec();
    assert!(!got[17]);
    assert_eq!(got.iter().filter(|&&r| !r).count(), 1);
    assert_eq!(batch.stats().failed_batches, 1);
}

#[test]
fn residual_is_bounded_and_exact_policy_closes_it() {
    // A key holder's signature with R = r·B + T (T of order 2): single rejects. The Fast
    // batch accepts it exactly when the weight is even (probability 1/2); Exact never does.
    let order2 = EIGHT_TORSION[4];
    assert!(!order2.is_identity() && (order2 + order2).is_identity());
    let pair = KeyPair::from_private([42; 32]);
    let hsh = blake2b_simd::blake2b(pair.private_bytes());
    let mut a = [0u8; 32];
    a.copy_from_slice(&hsh.as_bytes()[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    let msg = b"crafted";
    let sig = raw_sign(&a, &pair.public().0, &Scalar::from(777u64), &order2, msg);
    assert!(!verify(msg, &sig, &pair.public()));
    let honest: Vec<(Vec<u8>, Signature)> = (0..6u8)
        .map(|i| (vec![i; 40], pair.sign(&[i; 40])))
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let runs = 200;
    let mut accepted = [0usize; 2];
    for (p, policy) in [TorsionPolicy::Fast, TorsionPolicy::Exact]
        .into_iter()
        .enumerate()
    {
        let mut batch = BatchVerifier::with_policy(8, policy);
        for _ in 0..runs {
            for (m, s) in &honest {
                batch.push(&pair.public(), m, s).unwrap();
            }
            batch.push(&pair.public(), msg, &sig).unwrap();
            let got = batch.verify(&mut rng);
            assert!(got[..6].iter().all(|&r| r));
            accepted[p] += usize::from(got[6]);
        }
    }
    assert!(
        (60..=140).contains(&accepted[0]),
        "Fast accepted {}/{runs}",
        accepted[0]
    );
    assert_eq!(accepted[1], 0);
}

#[test]
fn batch_capacity_and_reuse() {
    let pair = KeyPair::from_private([3; 32]);
    let mut batch = BatchVerifier::new(4);
    assert_eq!(batch.capacity(), 4);
    for i in 0..4u8 {
        assert_eq!(
            batch.push(&pair.public(), &[i], &pair.sign(&[i])),
            Ok(i as usize)
        );
    }
    assert!(batch.is_full());
    assert_eq!(
        batch.push(&pair.public(), &[9], &pair.sign(&[9])),
        Err(CryptoError::BatchFull)
    );
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    assert_eq!(batch.verify(&mut rng), &[true; 4]);
    assert!(batch.is_empty());
    assert_eq!(batch.verify(&mut rng), &[] as &[bool]);
    batch.push(&pair.public(), &[1], &pair.sign(&[2])).unwrap();
    batch.clear();
    assert!(batch.is_empty());
    assert_eq!(BatchVerifier::new(0).capacity(), 1);
    assert_eq!(
        BatchVerifier::new(1 << 20).capacity(),
        nanopeer::crypto::MAX_BATCH
    );
}

#[test]
fn keypair_generate_and_roundtrip() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let a = KeyPair::generate(&mut rng);
    let b = KeyPair::from_private(*a.private_bytes());
    assert_eq!(a.public(), b.public());
    assert_ne!(a.public(), KeyPair::generate(&mut rng).public());
    let sig = a.sign(b"x");
    assert_eq!(sig, b.sign(b"x"), "deterministic");
    assert!(verify(b"x", &sig, &a.public()));
    assert!(!verify(b"y", &sig, &a.public()));
    let c = a.clone();
    assert_eq!(c.sign(b"x"), sig);
}
