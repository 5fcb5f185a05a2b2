/**
 * The type of the zod schema pieces `@triad/config` offers ({@linkcode duration},
 * {@linkcode secret}).
 *
 * @module
 */
import type { z } from "zod";

/**
 * A zod 4 schema with output `O` and input `I`: zod's `ZodType<O, I>`, named here so that the
 * pieces' signatures do not reference zod's types directly, which `deno doc --lint` reports as
 * private (denoland/deno#27364).
 *
 * @ignore
 */
export type ZodSchema<O, I> = z.ZodType<O, I>;
