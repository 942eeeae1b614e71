import { describe, expect, it } from "vitest";
import { createTenantClientSchema } from "./schema";

const accepts = (name: string) => createTenantClientSchema.safeParse({ name }).success;

describe("client name", () => {
  it("rejects exactly the control characters (\\p{Cc}), as before, without a regex flag", () => {
    const CONTROL = /\p{Cc}/u;
    // Todo el BMP (ahí están todos los Cc) y una muestra de planos astrales.
    const codePoints = [
      ...Array.from({ length: 0x10000 }, (_, i) => i).filter((cp) => cp < 0xd800 || cp > 0xdfff),
      0x1f600,
      0x10ffff,
      0xe0001,
    ];
    const wrong = codePoints.filter((cp) => {
      const ch = String.fromCodePoint(cp);
      return accepts(`a${ch}b`) === CONTROL.test(ch);
    });
    expect(wrong.map((cp) => cp.toString(16))).toEqual([]);
  });

  it("keeps its message and limits", () => {
    const res = createTenantClientSchema.safeParse({ name: "CRM\tventas" });
    expect(res.success).toBe(false);
    expect(res.error?.issues[0]?.message).toBe("no control characters");
    expect(accepts("")).toBe(false);
    expect(accepts("x".repeat(200))).toBe(true);
    expect(accepts("x".repeat(201))).toBe(false);
  });
});
