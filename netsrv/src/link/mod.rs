//! Links: the ports under one interface, and which of them carries a frame.
//!
//! A link of one port is a plain interface; a link of several is a bond
//! (active-backup or balance-xor, as Linux bonding). A port's driver
//! instance may come and go (`attach`/`detach`) without the interface, its
//! addresses or its sockets noticing more than a pause. See
//! docs/resilience.md.

use crate::device::{DeviceCounters, RingDevice, TxToken};
use crate::offload::OffloadTable;
use capnet_schema::offload_capnp::OffloadKind;
use capnet_tcpip::Cidr;
use std::cell::RefCell;
use std::rc::Rc;

mod io;
#[cfg(test)]
mod tests;

use capnet_tcpip::ip::announcement;
pub use io::LinkTx;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One port, no bond.
    Single,
    ActiveBackup,
    BalanceXor,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "active-backup" => Some(Mode::ActiveBackup),
            "balance-xor" => Some(Mode::BalanceXor),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::ActiveBackup => "active-backup",
            Mode::BalanceXor => "balance-xor",
        }
    }
}

/// Facts about a port that outlive its driver instances.
#[derive(Clone, Debug)]
pub struct PortMeta {
    pub name: String,
    pub backend: String,
    pub mac: [u8; 6],
    pub mtu: usize,
    /// The offload context kinds the driver offers.
    pub offloads: Vec<OffloadKind>,
}

/// One port: the rings of its current driver instance, if any.
pub struct Leg {
    pub meta: PortMeta,
    pub device: Option<RingDevice>,
    /// Instances attached so far, minus one.
    pub epoch: u32,
    /// Names the current instance, so that a late "disconnected" from an
    /// old one cannot detach a new one.
    pub instance: u64,
    pub attaches: u64,
    pub detaches: u64,
    /// Counters of instances already gone.
    retired: DeviceCounters,
    /// Frames a dead instance never gave back: sent again on the next live
    /// leg, so that TCP need not wait out a retransmission timeout.
    salvaged: Vec<(Vec<u8>, u32)>,
    salvaged_at: Option<std::time::Instant>,
    /// Frames a dead instance delivered that the stack had not read yet,
    /// with what the NIC did to them.
    received: std::collections::VecDeque<(Vec<u8>, capnet_ring::Desc)>,
}

impl Leg {
    pub fn new(meta: PortMeta) -> Leg {
        Leg {
            meta,
            device: None,
            epoch: 0,
            instance: 0,
            attaches: 0,
            detaches: 0,
            retired: DeviceCounters::default(),
            salvaged: Vec::new(),
            salvaged_at: None,
            received: std::collections::VecDeque::new(),
        }
    }

    /// Attached, within its ring contract, and carrier up.
    pub fn usable(&self) -> bool {
        self.device
            .as_ref()
            .is_some_and(|d| d.fault().is_none() && d.carrier())
    }

    pub fn state(&self) -> &'static str {
        match &self.device {
            None => "detached",
            Some(d) if d.fault().is_some() => "failed",
            Some(d) if d.carrier() => "up",
            Some(_) => "down",
        }
    }

    /// Puts a new driver instance's rings under the port. The previous
    /// instance's rings, if any, are released here.
    pub fn attach(&mut self, meta: PortMeta, device: RingDevice, instance: u64) {
        self.detach_current();
        if self.attaches > 0 {
            self.epoch += 1;
        }
        self.attaches += 1;
        self.meta = meta;
        self.device = Some(device);
        self.instance = instance;
    }

    /// Releases the rings of `instance` if it is still the current one.
    pub fn detach(&mut self, instance: u64) -> bool {
        if self.instance != instance || self.device.is_none() {
            return false;
        }
        self.detach_current();
        true
    }

    fn detach_current(&mut self) {
        if let Some(mut d) = self.device.take() {
            self.received.extend(d.drain_rx());
            self.salvaged = d.unreturned_frames();
            self.salvaged_at = Some(std::time::Instant::now());
            self.retired.add(&d.counters);
            self.detaches += 1;
        }
    }

    /// Counters over every instance.
    pub fn counters(&self) -> DeviceCounters {
        let mut c = self.retired;
        if let Some(d) = &self.device {
            c.add(&d.counters);
        }
        c
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct BondCounters {
    /// Changes of the active leg (active-backup) or of the live legs
    /// (balance-xor).
    pub failovers: u64,
    /// Gratuitous ARPs and unsolicited neighbour advertisements sent.
    pub announcements: u64,
    /// Reply frames dropped because no leg was up (other frames wait).
    pub tx_no_leg: u64,
    /// Broadcast or multicast frames dropped on an inactive leg.
    pub rx_inactive: u64,
    /// Frames a dead driver instance never gave back, sent again on a live
    /// leg; and those given up (too old, or no leg could fill checksums).
    pub salvage_resent: u64,
    pub salvage_dropped: u64,
}

/// How long frames of a dead driver instance stay worth sending again:
/// about a retransmission timeout, after which TCP has resent them anyway.
const SALVAGE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Link {
    pub name: String,
    pub mode: Mode,
    pub legs: Vec<Leg>,
    pub primary: Option<usize>,
    active: Option<usize>,
    live: Vec<usize>,
    /// The MAC of the first leg, used on every leg.
    mac: [u8; 6],
    /// Last known MTU and offload, for while no leg is attached.
    mtu: usize,
    checksum_offload: bool,
    scratch: Vec<u8>,
    rx_next: usize,
    announce_pending: bool,
    /// Leg state at the last selection, and whether a setting changed since.
    seen: (u64, u64),
    reselect: bool,
    pub counters: BondCounters,
    /// Connections bound to offload contexts (shared by every link).
    pub offload: Rc<RefCell<OffloadTable>>,
}

/// Legs a link can have (their state fits one machine word).
pub const MAX_LEGS: usize = 64;

pub use capnet_wire::flow::{flow_key, frame_hash, FlowKey};

/// Frames merged for a driver that segments (TSO) cut back into the
/// segments they hold, so that any leg can take them (one that segments
/// merges them again). Checksums are filled: `TX_CSUM` is dropped.
fn cut_merged(frames: Vec<(Vec<u8>, u32)>, mtu: usize) -> Vec<(Vec<u8>, u32)> {
    use capnet_ring::flags;
    let mut out = Vec::with_capacity(frames.len());
    for (frame, f) in frames {
        if f & flags::TSO == 0 {
            out.push((frame, f));
            continue;
        }
        // Our own frame, unless memory went bad: a frame that does not cut
        // is lost as on a wire, and TCP sends its bytes again.
        let Ok(segments) = capnet_wire::gso::Segments::new(&frame, flags::gso_size(f), mtu) else {
            continue;
        };
        let plain = f & !(flags::TSO | flags::TX_CSUM) & 0xffff;
        for k in 0..segments.count() {
            let mut seg = vec![0; segments.frame_len(k)];
            segments.write(&frame, k, &mut seg);
            out.push((seg, plain));
        }
    }
    out
}

fn is_group(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 1)
}

impl Link {
    pub fn new(name: String, mode: Mode, legs: Vec<Leg>, primary: Option<usize>) -> Link {
        let mac = legs
            .first()
            .map(|l| l.meta.mac)
            .unwrap_or([2, 0, 0, 0, 0, 0]);
        let mtu = legs.iter().map(|l| l.meta.mtu).min().unwrap_or(1500);
        let mut link = Link {
            name,
            mode,
            legs,
            primary,
            active: None,
            live: Vec::new(),
            mac,
            mtu,
            checksum_offload: false,
            scratch: vec![0; mtu + 14],
            rx_next: 0,
            announce_pending: false,
            seen: (0, 0),
            reselect: true,
            counters: BondCounters::default(),
            offload: Rc::default(),
        };
        link.refresh();
        link
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The IP MTU frames on this link may carry (the smallest leg's).
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    pub fn is_bond(&self) -> bool {
        self.mode != Mode::Single
    }

    /// True if some leg can carry frames now.
    pub fn has_live_leg(&self) -> bool {
        !self.live.is_empty()
    }

    /// The leg carrying traffic in active-backup (or the single port).
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    pub fn announce_pending(&self) -> bool {
        self.announce_pending
    }

    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.reselect = true;
        self.refresh();
    }

    pub fn set_primary(&mut self, primary: Option<usize>) {
        self.primary = primary;
        self.reselect = true;
        self.refresh();
    }

    /// Which legs are usable and which attached, one bit each.
    fn leg_state(&self) -> (u64, u64) {
        let mut usable = 0u64;
        let mut attached = 0u64;
        for (i, l) in self.legs.iter().enumerate().take(MAX_LEGS) {
            if l.usable() {
                usable |= 1 << i;
            }
            if l.device.is_some() {
                attached |= 1 << i;
            }
        }
        (usable, attached)
    }

    /// Re-selects legs from their current state; true if the selection
    /// changed (then peers are told the new path on the next poll).
    pub fn refresh(&mut self) -> bool {
        // The common case, on every poll: nothing changed, nothing to do.
        let state = self.leg_state();
        if state == self.seen && !self.reselect {
            return false;
        }
        self.seen = state;
        self.reselect = false;
        let live: Vec<usize> = (0..self.legs.len())
            .filter(|&i| self.legs[i].usable())
            .collect();
        let active = match self.mode {
            Mode::BalanceXor => None,
            _ => self
                .primary
                .filter(|p| live.contains(p))
                .or(self.active.filter(|a| live.contains(a)))
                .or(live.first().copied()),
        };
        let attached: Vec<&RingDevice> =
            self.legs.iter().filter_map(|l| l.device.as_ref()).collect();
        if !attached.is_empty() {
            self.mtu = attached.iter().map(|d| d.mtu()).min().unwrap_or(self.mtu);
            self.checksum_offload = attached.iter().all(|d| d.checksum_offload());
            if self.scratch.len() < self.mtu + 14 {
                self.scratch.resize(self.mtu + 14, 0);
            }
        }
        let changed = match self.mode {
            Mode::BalanceXor => live != self.live,
            _ => active != self.active,
        };
        if changed {
            if self.is_bond() {
                // Moving off a leg is a failover; choosing the first one is not.
                let had_leg = match self.mode {
                    Mode::BalanceXor => !self.live.is_empty(),
                    _ => self.active.is_some(),
                };
                if had_leg {
                    self.counters.failovers += 1;
                }
                tracing::info!(
                    bond = %self.name,
                    active = ?active.map(|i| &self.legs[i].meta.name),
                    live = ?live.iter().map(|&i| &self.legs[i].meta.name).collect::<Vec<_>>(),
                    "bond legs changed"
                );
                self.announce_pending = !live.is_empty();
            }
            self.active = active;
        }
        self.live = live;
        changed
    }

    /// The leg a flow leaves by now.
    pub fn select(&self, key: Option<&FlowKey>) -> Option<usize> {
        match self.mode {
            Mode::Single | Mode::ActiveBackup => self.active,
            Mode::BalanceXor => {
                if self.live.is_empty() {
                    return None;
                }
                let h = key.map(FlowKey::hash).unwrap_or(0);
                Some(self.live[h as usize % self.live.len()])
            }
        }
    }

    fn select_for_frame(&self, frame: &[u8], reverse: bool) -> Option<usize> {
        match self.mode {
            Mode::BalanceXor if !self.live.is_empty() => {
                let h = frame_hash(frame, reverse);
                Some(self.live[h as usize % self.live.len()])
            }
            _ => self.select(None),
        }
    }

    /// After a change of legs, tells peers (and bridges) the new path:
    /// a gratuitous ARP per IPv4 address and an unsolicited neighbour
    /// advertisement per IPv6 address, on every leg that now carries
    /// traffic.
    pub fn announce(&mut self, addresses: &[Cidr]) {
        if !std::mem::take(&mut self.announce_pending) {
            return;
        }
        let legs: Vec<usize> = match self.mode {
            Mode::Single => return,
            Mode::ActiveBackup => self.active.into_iter().collect(),
            Mode::BalanceXor => self.live.clone(),
        };
        for cidr in addresses {
            let len = announcement(&mut self.scratch, self.mac, cidr.addr);
            for &i in &legs {
                let Some(dev) = self.legs[i].device.as_mut() else {
                    continue;
                };
                let frame = &self.scratch[..len];
                dev.reply_token().consume(len, |b| b.copy_from_slice(frame));
                self.counters.announcements += 1;
            }
        }
    }

    /// Sends frames that dead driver instances never gave back, on the leg
    /// each would take now; what finds no TX buffer waits for the next poll.
    pub fn resend_salvaged(&mut self) {
        for i in 0..self.legs.len() {
            if self.legs[i].salvaged.is_empty() {
                continue;
            }
            let stale = self.legs[i]
                .salvaged_at
                .is_none_or(|t| t.elapsed() > SALVAGE_TTL);
            if stale {
                self.counters.salvage_dropped += self.legs[i].salvaged.len() as u64;
                self.legs[i].salvaged.clear();
                continue;
            }
            if self.live.is_empty() {
                continue;
            }
            let frames = cut_merged(std::mem::take(&mut self.legs[i].salvaged), self.mtu);
            let mut waiting = Vec::new();
            for (frame, flags) in frames {
                let Some(dev) = self
                    .select_for_frame(&frame, false)
                    .and_then(|j| self.legs[j].device.as_mut())
                else {
                    waiting.push((frame, flags));
                    continue;
                };
                // A frame for a TLS context may have been sealed in place
                // by the dead driver, or not: neither resending it sealed
                // again nor sending it unsealed is safe. TCP resends its
                // bytes from its send queue.
                if flags & capnet_ring::flags::OFFLOAD_TX != 0 {
                    self.counters.salvage_dropped += 1;
                    continue;
                }
                if flags & capnet_ring::flags::TX_CSUM != 0 && !dev.checksum_offload() {
                    // Its checksums were left to a driver; this one will not.
                    self.counters.salvage_dropped += 1;
                    continue;
                }
                match dev.tx_token() {
                    Some(t) => {
                        t.consume(frame.len(), |b| b.copy_from_slice(&frame[..b.len()]));
                        self.counters.salvage_resent += 1;
                    }
                    None => waiting.push((frame, flags)),
                }
            }
            self.legs[i].salvaged = waiting;
        }
    }

    /// Sends one ready-made frame on the leg its flow takes now (through
    /// the port's TX path, offload table included). False if no leg had a
    /// buffer.
    pub fn send_frame(&mut self, frame: &[u8]) -> bool {
        let Some(dev) = self
            .select_for_frame(frame, false)
            .and_then(|j| self.legs[j].device.as_mut())
        else {
            return false;
        };
        match dev.tx_token() {
            Some(t) => {
                t.consume(frame.len(), |b| b.copy_from_slice(&frame[..b.len()]));
                true
            }
            None => false,
        }
    }

    /// Publishes staged descriptors on every leg.
    pub fn flush(&mut self) {
        for leg in &mut self.legs {
            if let Some(d) = &mut leg.device {
                d.flush();
            }
        }
    }

    pub fn take_activity(&mut self) -> bool {
        let mut any = false;
        for leg in &mut self.legs {
            if let Some(d) = &mut leg.device {
                any |= d.take_activity();
            }
        }
        any
    }

    /// Arms every leg's doorbell; true if work arrived meanwhile.
    pub fn arm(&mut self) -> bool {
        let mut pending = false;
        for leg in &mut self.legs {
            if let Some(d) = &mut leg.device {
                pending |= d.arm();
            }
        }
        pending
    }

    /// Counters summed over the legs.
    pub fn device_counters(&self) -> DeviceCounters {
        let mut sum = DeviceCounters::default();
        for leg in &self.legs {
            sum.add(&leg.counters());
        }
        sum
    }

    pub fn leg_named(&self, name: &str) -> Option<usize> {
        self.legs.iter().position(|l| l.meta.name == name)
    }
}
