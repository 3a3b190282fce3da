#!/usr/bin/env bash
# AgentOwl installer: PLACEHOLDER. Packaging (service user, binary, `agentowl init`, the systemd
# unit or launchd plist, --upgrade with rollback, --uninstall; SPEC §15) comes in a later issue.
# Until then, by hand: `npm run build`, copy dist/agentowl to /usr/local/bin, run
# `agentowl init`, and install systemd/agentowl.service or launchd/dev.agentowl.agentowl.plist.
echo "install.sh: packaging comes later; see the comments in this file for the manual steps." >&2
exit 1
