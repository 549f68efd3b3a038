/**
 * A throwaway copy of the repository for the release rehearsal, so that `changeset version`,
 * the build and the protocol update never touch the working tree other people work in.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Environment for git in the copy: no user or system configuration, a fixed identity. */
export function gitEnv(home: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOME: home,
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_AUTHOR_NAME: "release rehearsal",
    GIT_AUTHOR_EMAIL: "release@vhostkit.invalid",
    GIT_COMMITTER_NAME: "release rehearsal",
    GIT_COMMITTER_EMAIL: "release@vhostkit.invalid",
  };
}

function git(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): string {
  const r = spawnSync("git", args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")} (in ${cwd}) failed:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Copies a directory of symlinks (a workspace's node_modules) with every link target kept verbatim. */
function copyLinks(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from)) {
    const src = join(from, e);
    const dst = join(to, e);
    const st = lstatSync(src);
    if (st.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
    else if (st.isDirectory()) copyLinks(src, dst);
    else copyFileSync(src, dst);
  }
}

/**
 * Copies the files of `root` that git tracks or would track (not ignored), as they are in the
 * working tree, to `dest`, makes it a git repository with one commit, and links it to the
 * dependencies already installed: `node_modules` points at the repository's, and each workspace
 * gets its own `node_modules` of links (relative links, so `@vhostkit/*` resolve inside the copy).
 */
export function copyWorkspace(root: string, dest: string, env: NodeJS.ProcessEnv): void {
  // The user's own git configuration here (safe.directory may be what lets them read the repository).
  const files = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root, process.env)
    .split("\0")
    .filter((f) => f !== "");
  for (const f of files) {
    const src = join(root, f);
    if (!existsSync(src)) continue; // deleted in the working tree, not yet committed
    mkdirSync(dirname(join(dest, f)), { recursive: true });
    copyFileSync(src, join(dest, f));
  }
  symlinkSync(realpathSync(join(root, "node_modules")), join(dest, "node_modules"));
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { workspaces: string[] };
  for (const glob of manifest.workspaces) {
    const base = glob.replace(/\/\*$/, "");
    if (!existsSync(join(root, base))) continue;
    for (const d of readdirSync(join(root, base))) {
      const nm = join(root, base, d, "node_modules");
      if (existsSync(nm) && existsSync(join(dest, base, d))) copyLinks(nm, join(dest, base, d, "node_modules"));
    }
  }
  git(["init", "-q", "-b", "main"], dest, env);
  // .gitignore's `node_modules/` does not match the root's link.
  writeFileSync(join(dest, ".git", "info", "exclude"), "/node_modules\n");
  commitAll(dest, "working tree of the repository", env);
}

/** `git add -A` and a commit in the copy (an empty one when nothing changed). */
export function commitAll(dir: string, message: string, env: NodeJS.ProcessEnv): void {
  git(["add", "-A"], dir, env);
  git(["commit", "-q", "--no-verify", "--allow-empty", "-m", message], dir, env);
}

/** Tags in the copy (`git tag --list`). */
export function tags(dir: string, env: NodeJS.ProcessEnv): string[] {
  return git(["tag", "--list"], dir, env)
    .split("\n")
    .filter((t) => t !== "");
}
