/**
 * A pool of equivalent upstream servers, and which of them gets the next request:
 * - a conversation's next turn goes to the member that had its previous turn (its KV cache holds the prefix),
 *   while that member is in service and not overloaded (outstanding ≤ 2× the pool's mean, rounded up);
 * - otherwise the member with the least outstanding requests per unit of weight; ties go round in proportion to
 *   the weights (smooth weighted round-robin, as nginx's least_conn does).
 * Members out of service are skipped; the last member in service is never taken out.
 */
import { LRUCache } from "lru-cache";
import type { PoolSettings } from "../config/index.ts";
import type { BridgeMetrics } from "../observe/metrics.ts";
import { Member } from "./member.ts";

/** Conversations whose member each pool remembers (the oldest are forgotten first). */
const REMEMBERED_CONVERSATIONS = 65_536;

export interface Pick {
  readonly member: Member;
  /** The member was chosen because it had the conversation's previous turn. */
  readonly affinityHit: boolean;
}

export class UpstreamPool {
  readonly name: string;
  readonly members: readonly Member[];
  readonly #conversations = new LRUCache<string, Member>({ max: REMEMBERED_CONVERSATIONS });

  constructor(settings: PoolSettings, metrics: BridgeMetrics) {
    this.name = settings.name;
    this.members = settings.members.map((member) => new Member(member, settings.name, metrics));
  }

  /** Whether any member is healthy. */
  get healthy(): boolean {
    return this.members.some((member) => member.healthy);
  }

  /**
   * The member for a request. `tried` are the members it already failed on: another is chosen while there is one
   * in service; once every member was tried, any may be.
   */
  pick(conversation: string | undefined, tried: ReadonlySet<Member>): Pick {
    const inService = this.members.filter((member) => member.inService);
    const untried = this.#untried(tried);
    const choices = preferHealthy(untried.length ? untried : inService.length ? inService : this.members);
    const previous = conversation === undefined ? undefined : this.#conversations.get(conversation);
    if (previous && choices.includes(previous) && previous.inflight <= overloadBound(inService)) {
      return { member: previous, affinityHit: true };
    }
    return { member: leastOutstanding(choices), affinityHit: false };
  }

  /** Whether a member in service is left that the request has not tried (failover has somewhere to go). */
  hasUntried(tried: ReadonlySet<Member>): boolean {
    return this.#untried(tried).length > 0;
  }

  #untried(tried: ReadonlySet<Member>): Member[] {
    return this.members.filter((member) => member.inService && !tried.has(member));
  }

  /** The member that answered a conversation's turn: its next turn goes there too. */
  remember(conversation: string | undefined, member: Member): void {
    if (conversation !== undefined && this.members.length > 1) this.#conversations.set(conversation, member);
  }

  /** Whether `member` may be taken out: another member stays in service. */
  mayTakeOut(member: Member): boolean {
    return this.members.some((other) => other !== member && other.inService);
  }
}

function preferHealthy(members: readonly Member[]): readonly Member[] {
  const healthy = members.filter((member) => member.healthy);
  return healthy.length ? healthy : members;
}

/** The most a member may hold and still get its conversations: twice the pool's mean, rounded up. */
function overloadBound(inService: readonly Member[]): number {
  if (!inService.length) return Infinity;
  const total = inService.reduce((sum, member) => sum + member.inflight, 0);
  return Math.ceil((2 * total) / inService.length);
}

function leastOutstanding(members: readonly Member[]): Member {
  let tied: Member[] = [];
  for (const member of members) {
    // inflight/weight compared without division: a.inflight/a.weight < b.inflight/b.weight.
    const order = tied.length ? member.inflight * tied[0].weight - tied[0].inflight * member.weight : -1;
    if (order < 0) tied = [member];
    else if (order === 0) tied.push(member);
  }
  if (tied.length === 1) return tied[0];
  let chosen = tied[0];
  let weights = 0;
  for (const member of tied) {
    member.turn += member.weight;
    weights += member.weight;
    if (member.turn > chosen.turn) chosen = member;
  }
  chosen.turn -= weights;
  return chosen;
}
