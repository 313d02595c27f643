"""Grover social app (seed 003) on Backbone, end to end.

    python examples/seeds/social/walkthrough.py [--bin-dir target/debug]

- the **user service** (Python, ``backbone_client.HttpPublisher``) publishes
  ``user.followed`` and ``user.unfollowed`` as its follow endpoint runs;
- the **notification service** reads the ``notifications`` read model the
  server keeps and shows the followee's "new follower" feed;
- an operator rebuilds a new ``notifications`` model from the log with
  ``replay-tool rebuild --verify`` (the digest of the rebuilt store must
  equal the live one);
- an auditor asks "who followed u-42 last week" with ``replay-tool audit``.

Everything runs on one machine: ``backbone-server`` on its embedded log, a
free loopback port, a temporary directory. Prints each answer; exits 1 if
any is wrong.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seedkit  # noqa: E402
from backbone_client import HttpPublisher, events  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

STAR = "u-42"
FOLLOWS = [("u-1", STAR), ("u-2", STAR), ("u-3", STAR), ("u-42", "u-1")]
UNFOLLOWS = [("u-2", STAR)]


class UserService:
    """The seed's ``follow_user``/``unfollow_user``, publishing their
    events instead of calling the notification service."""

    def __init__(self, publisher: HttpPublisher):
        self.publisher = publisher

    def follow(self, follower: str, followee: str) -> int:
        now = Timestamp()
        now.GetCurrentTime()
        event = events.UserFollowed(follower_id=follower, followee_id=followee, followed_at=now)
        return self.publisher.publish(event).seq

    def unfollow(self, follower: str, followee: str) -> int:
        now = Timestamp()
        now.GetCurrentTime()
        event = events.UserUnfollowed(follower_id=follower, followee_id=followee,
                                      unfollowed_at=now)
        return self.publisher.publish(event).seq


class NotificationService:
    """Answers from the server's ``notifications`` read model."""

    def __init__(self, server: seedkit.Server):
        self.server = server

    def feed(self, user: str, after_seq: int) -> list[str]:
        answer = self.server.wait_for(
            f"/v1/models/notifications/users/{user}/feed",
            lambda a: any(item["seq"] >= after_seq for item in a["items"]),
        )
        return [f"new follower: {item['actor']}" for item in answer["items"]
                if item["text"].endswith("followed you")]

    def followers(self, user: str) -> list[str]:
        return self.server.get(f"/v1/models/notifications/users/{user}/followers")["items"]


def main() -> None:
    args = seedkit.parse_args(__doc__.splitlines()[0])
    with seedkit.Server(args.bin_dir, models='["notifications", "audit"]') as server:
        users = UserService(HttpPublisher(server.url, source="grover-user-service"))
        notifications = NotificationService(server)
        print("user service: follows and unfollows")
        last = 0
        for follower, followee in FOLLOWS:
            last = users.follow(follower, followee)
        for follower, followee in UNFOLLOWS:
            last = users.unfollow(follower, followee)

        print(f"notification service: {STAR}'s feed")
        feed = notifications.feed(STAR, last)
        seedkit.check("feed, newest first", feed,
                      ["new follower: u-3", "new follower: u-2", "new follower: u-1"])
        seedkit.check("followers after u-2 unfollowed", notifications.followers(STAR),
                      ["u-1", "u-3"])

        print("operator: rebuild notifications from the log, verified against the live store")
        rebuild = seedkit.replay_tool(args.bin_dir, "rebuild", "notifications", "--verify",
                                      data_dir=server.data_dir)
        seedkit.check("replay-tool rebuild --verify exit code (0: digests equal)",
                      rebuild.returncode, 0)
        if rebuild.returncode != 0:
            print(rebuild.stdout, rebuild.stderr)
        seedkit.check("followers from the rebuilt model", notifications.followers(STAR),
                      ["u-1", "u-3"])

        print(f"auditor: who followed {STAR} last week")
        week_ago = (datetime.datetime.now(datetime.timezone.utc)
                    - datetime.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        audit = seedkit.replay_tool(
            args.bin_dir, "--output", "json", "audit", "--type", "user.followed",
            "--where", f"followee_id = {STAR}", "--since", week_ago, data_dir=server.data_dir,
        )
        seedkit.check("replay-tool audit exit code", audit.returncode, 0)
        followers = []
        if audit.returncode == 0:
            followers = sorted(row["data"]["followerId"] for row in json.loads(audit.stdout))
        else:
            print(audit.stdout, audit.stderr)
        seedkit.check("followed u-42 in the last 7 days", followers, ["u-1", "u-2", "u-3"])
    seedkit.finish("social walkthrough")


if __name__ == "__main__":
    main()
