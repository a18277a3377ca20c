"""Fake ID-document data shaped exactly like the official SDK's card models.

Each `IdCardType` maps to the key and the field names that `tencentcloud.faceid.v20180301.models`
knows for `CardInfo` (raw OCR) and `NormalCardInfo` (mapped fields); the SDK warns about any field
it does not know, and the simulator's SDK tests turn that warning into a failure. Everything is
invented: no real person, no real ID number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_GIVEN = ("Mei Ling", "Wei Jie", "Siti", "Arif", "Somchai", "Maria", "Jun Hao", "Nur Aina")
_FAMILY = ("Chan", "Tan", "Wong", "Lim", "Rahman", "Santos", "Sukprasert", "Hartono")
_CHINESE = ("陈美玲", "谭伟杰", "黄俊豪", "林慧敏")
_STREETS = ("1 Sample Road", "22 Example Street", "303 Placeholder Avenue", "4 Fictional Lane")


@dataclass(frozen=True, slots=True)
class Person:
    """One invented holder, so the raw and the mapped card agree with each other."""

    given: str
    family: str
    chinese: str
    sex: str
    birthday: str
    number: str
    address: str
    issued: str
    expires: str

    @property
    def full_name(self) -> str:
        return f"{self.family.upper()}, {self.given.upper()}"


def fake_person(rng: random.Random) -> Person:
    year = rng.randint(1950, 2005)
    issued_year = rng.randint(2015, 2024)
    return Person(
        given=rng.choice(_GIVEN),
        family=rng.choice(_FAMILY),
        chinese=rng.choice(_CHINESE),
        sex=rng.choice("MF"),
        birthday=f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        number="".join(rng.choice("0123456789") for _ in range(12)),
        address=f"{rng.choice(_STREETS)}, Simulated City",
        issued=f"{issued_year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        expires=f"{issued_year + 10}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    )


CardFields = dict[str, object]


def card_info(id_card_type: str, p: Person) -> tuple[CardFields, CardFields]:
    """(CardInfo, NormalCardInfo) for one document type; unknown types use GeneralCard."""
    if id_card_type == "HK":
        hk_no = f"{p.family[0]}{p.number[:6]}({p.number[6]})"
        return (
            {
                "HKIDCard": {
                    "CnName": p.chinese,
                    "EnName": p.full_name,
                    "TelexCode": "7115 5019 3781",
                    "Sex": p.sex,
                    "Birthday": p.birthday,
                    "Permanent": "1",
                    "IdNum": hk_no,
                    "Symbol": "***AZ",
                    "FirstIssueDate": p.issued,
                    "CurrentIssueDate": p.issued,
                }
            },
            {
                "HKIDCard": {
                    "ChineseName": p.chinese,
                    "FullName": p.full_name,
                    "RegistrationNumber": "7115 5019 3781",
                    "Sex": p.sex,
                    "Birthday": p.birthday,
                    "Permanent": "1",
                    "LicenseNumber": hk_no,
                    "Symbol": "***AZ",
                    "IssuedDate": p.issued,
                    "CurrentIssueDate": p.issued,
                    "HKIDVersion": "HKID-2018",
                }
            },
        )
    if id_card_type == "ML":
        return (
            {
                "MLIDCard": {
                    "Name": p.full_name,
                    "ID": p.number,
                    "Sex": p.sex,
                    "Address": p.address,
                    "Type": "MyKad",
                    "Birthday": p.birthday,
                }
            },
            {
                "MLIDCard": {
                    "FullName": p.full_name,
                    "LicenseNumber": p.number,
                    "Sex": p.sex,
                    "FormattedAddress": p.address,
                    "Type": "MyKad",
                    "Birthday": p.birthday,
                }
            },
        )
    if id_card_type == "IndonesiaIDCard":
        return (
            {
                "IndonesiaIDCard": {
                    "NIK": p.number + "0000",
                    "Nama": p.full_name,
                    "TempatTglLahir": f"SIMULASI, {p.birthday}",
                    "JenisKelamin": "LAKI-LAKI" if p.sex == "M" else "PEREMPUAN",
                    "GolDarah": "O",
                    "Alamat": p.address,
                    "RTRW": "001/002",
                    "KelDesa": "CONTOH",
                    "Kecamatan": "CONTOH",
                    "Agama": "ISLAM",
                    "StatusPerkawinan": "BELUM KAWIN",
                    "Perkerjaan": "KARYAWAN SWASTA",
                    "KewargaNegaraan": "WNI",
                    "BerlakuHingga": "SEUMUR HIDUP",
                    "IssuedDate": p.issued,
                    "Provinsi": "DKI JAKARTA",
                    "Kota": "JAKARTA SIMULASI",
                }
            },
            {
                "IndonesiaIDCard": {
                    "LicenseNumber": p.number + "0000",
                    "FullName": p.full_name,
                    "Birthday": p.birthday,
                    "Sex": p.sex,
                    "BloodType": "O",
                    "FormattedAddress": p.address,
                    "Street": p.address,
                    "Village": "CONTOH",
                    "Area": "CONTOH",
                    "Religion": "ISLAM",
                    "MaritalStatus": "BELUM KAWIN",
                    "Occupation": "KARYAWAN SWASTA",
                    "Nationality": "WNI",
                    "DueDate": "SEUMUR HIDUP",
                    "IssuedDate": p.issued,
                    "Province": "DKI JAKARTA",
                    "City": "JAKARTA SIMULASI",
                }
            },
        )
    if id_card_type == "ThailandIDCard":
        return (
            {
                "ThailandIDCard": {
                    "LastName": p.family,
                    "FirstName": p.given,
                    "LicenseNumber": p.number[:13],
                    "DateOfBirth": p.birthday,
                    "DateOfExpiry": p.expires,
                    "DateOfIssue": p.issued,
                    "IssuedCountry": "THA",
                }
            },
            {
                "ThailandIDCard": {
                    "LicenseNumber": p.number[:13],
                    "FullName": p.full_name,
                    "LastName": p.family,
                    "FirstName": p.given,
                    "Birthday": p.birthday,
                    "FormattedAddress": p.address,
                    "ExpirationDate": p.expires,
                    "IssuedDate": p.issued,
                    "RegistrationNumber": p.number[-8:],
                    "Religion": "",
                    "ThaiBirthday": "",
                    "ThaiExpirationDate": "",
                    "ThaiIssueDate": "",
                }
            },
        )
    if id_card_type == "SingaporeIDCard":
        sg = {
            "ChName": p.chinese,
            "ChineseName": p.chinese,
            "EnName": p.full_name,
            "FullName": p.full_name,
            "ID": f"S{p.number[:7]}Z",
            "LicenseNumber": f"S{p.number[:7]}Z",
            "Sex": p.sex,
            "CountryOfBirth": "SINGAPORE",
            "Nationality": "SINGAPORE CITIZEN",
            "Birthday": p.birthday,
            "Address": p.address,
            "Race": "CHINESE",
            "NRICCode": f"S{p.number[:7]}Z",
            "PostCode": p.number[:6],
            "DateOfExpiration": p.expires,
            "DateOfIssue": p.issued,
        }
        return {"SingaporeIDCard": sg}, {"SingaporeIDCard": dict(sg)}
    if id_card_type == "PhilippinesVoteID":
        vote = {
            "VIN": p.number,
            "FirstName": p.given,
            "LastName": p.family,
            "Birthday": p.birthday,
            "CivilStatus": "SINGLE",
            "Citizenship": "FILIPINO",
            "Address": p.address,
            "PrecinctNo": p.number[:5],
        }
        return {"PhilippinesVoteID": vote}, {"PhilippinesVoteID": dict(vote)}
    if id_card_type == "MLIDPassport":
        passport = {
            "LicenseNumber": f"A{p.number[:8]}",
            "FullName": p.full_name,
            "Surname": p.family,
            "GivenName": p.given,
            "Birthday": p.birthday,
            "Sex": p.sex,
            "DateOfExpiration": p.expires,
            "IssuingCountry": "MYS",
            "NationalityCode": "MYS",
            "PassportCodeFirst": f"P<MYS{p.family.upper()}<<{p.given.upper().replace(' ', '<')}",
            "PassportCodeSecond": f"A{p.number[:8]}<0MYS",
        }
        return {"InternationalIDPassport": passport}, {"InternationalIDPassport": dict(passport)}
    general = {
        "LicenseNumber": p.number,
        "PersonalNumber": p.number[::-1],
        "PassportCodeFirst": "",
        "PassportCodeSecond": "",
        "ExpirationDate": p.expires,
        "DueDate": p.expires,
        "IssuedDate": p.issued,
        "IssuedAuthority": "SIMULATED AUTHORITY",
        "IssuedCountry": "SIM",
        "FullName": p.full_name,
        "FirstName": p.given,
        "LastName": p.family,
        "Sex": p.sex,
        "Age": "",
        "Birthday": p.birthday,
        "BirthPlace": "SIMULATED CITY",
        "Nationality": "SIM",
        "RegistrationNumber": "",
        "Address": {
            "Country": "SIM",
            "PostalCode": p.number[:5],
            "Subdivision": "",
            "City": "Simulated City",
            "FormattedAddress": p.address,
            "LineOne": p.address,
            "LineTwo": "",
            "LineThree": "",
            "LineFour": "",
            "LineFive": "",
        },
        "FullNameLocal": "",
        "FirstNameLocal": "",
        "LastNameLocal": "",
    }
    return {"GeneralCard": general}, {"GeneralCard": dict(general)}
