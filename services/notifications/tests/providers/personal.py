"""A customer's data as the tests send it: none of it may appear in a log line or an error."""

from __future__ import annotations

PHONE = "+8613912345678"
EMAIL = "liu.jianjun@example.cn"
DEVICE_TOKEN = "apns-3f9c2a7be1d04c55"
SUBJECT = "刘建军先生：美元存款专享"
BODY = "刘建军先生您好，您账户6000美元可享美元定存优惠。回复TD退订"

FRAGMENTS = (
    PHONE,
    PHONE[3:],
    "13912345678",
    EMAIL,
    "liu.jianjun",
    DEVICE_TOKEN,
    "刘建军",
    "6000美元",
)
