"""The test SMTP server's handler: aiosmtpd's Maildir handler, except that it refuses, for
good (550), every recipient whose local part starts with "bounce", as a real server
refuses a mailbox that does not exist."""

from aiosmtpd.handlers import Mailbox


class RefusingMailbox(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@", 1)[0].lower().startswith("bounce"):
            return "550 5.1.1 <%s>: no such mailbox" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"
