import { describe, expect, it } from "vitest";
import { clientAuthSource, UNKNOWN_SOURCE } from "./client-auth";

describe("clientAuthSource", () => {
  it("keys IPv4 by address and IPv6 by its /64", () => {
    expect(clientAuthSource(" 203.0.113.7 ")).toBe("203.0.113.7");
    expect(clientAuthSource("2001:DB8:77:1::5")).toBe("2001:db8:77:1::/64");
    expect(clientAuthSource("2001:0db8:0077:0001:ffff:1:2:3")).toBe("2001:db8:77:1::/64");
    expect(clientAuthSource("::1")).toBe("0:0:0:0::/64");
    expect(clientAuthSource("2001:db8::")).toBe("2001:db8:0:0::/64");
    expect(clientAuthSource("::ffff:203.0.113.7")).toBe("203.0.113.7");
  });

  it("puts a missing or malformed header in the shared unknown bucket", () => {
    for (const header of [
      undefined,
      "",
      "not-an-ip",
      "256.1.1.1",
      "1.2.3",
      "2001:db8::1::2",
      "1:2:3:4:5:6:7:8:9",
      "fe80::1%eth0",
      "::ffff:203.0.113",
    ]) {
      expect(clientAuthSource(header), String(header)).toBe(UNKNOWN_SOURCE);
    }
  });
});
