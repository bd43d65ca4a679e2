//! "faces": front-facing cartoon portraits whose attributes (age, expression, hair colour and
//! style, glasses, beard, skin tone, man or woman, background) are each drawn so a model has
//! to see them, and named in the captions so it has to read them: "He is young, receding
//! hairline" and "He is old, receding hairline" differ in wrinkles, eye bags and grey hair.

use serde::Serialize;

use super::raster::{arc, in_ellipse, jitter, mix, Canvas, Rgb, Rng};

pub const SKINS: [(&str, Rgb); 4] =
    [("light", [246, 214, 188]), ("tan", [224, 176, 130]), ("brown", [160, 106, 68]), ("dark", [98, 64, 42])];
pub const HAIR: [(&str, Rgb); 6] = [
    ("black", [28, 24, 24]),
    ("brown", [100, 60, 30]),
    ("blonde", [232, 198, 110]),
    ("red", [186, 70, 28]),
    ("grey", [150, 150, 150]),
    ("white", [240, 240, 240]),
];
pub const BACKGROUNDS: [(&str, Rgb); 8] = [
    ("blue", [110, 155, 225]),
    ("green", [130, 195, 130]),
    ("yellow", [240, 220, 120]),
    ("pink", [240, 165, 190]),
    ("grey", [185, 185, 185]),
    ("purple", [170, 140, 210]),
    ("orange", [245, 175, 110]),
    ("white", [250, 250, 250]),
];
const SHIRTS: [Rgb; 6] = [[60, 90, 160], [170, 50, 50], [50, 120, 80], [90, 90, 90], [220, 200, 80], [120, 70, 140]];

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaceAttrs {
    /// "man" or "woman".
    pub gender: &'static str,
    /// "young" or "old".
    pub age: &'static str,
    /// "smiling" or "sad".
    pub expression: &'static str,
    pub hair_color: &'static str,
    /// "full", "receding" or "bald".
    pub hair_style: &'static str,
    pub glasses: bool,
    pub beard: bool,
    pub skin: &'static str,
    pub background: &'static str,
}

fn lookup(table: &[(&str, Rgb)], name: &str) -> Rgb {
    table.iter().find(|(n, _)| *n == name).map_or([128; 3], |c| c.1)
}

pub fn sample(rng: &mut Rng) -> FaceAttrs {
    let gender = rng.pick(&["man", "woman"]);
    let age = rng.pick(&["young", "old"]);
    // Grey and white hair are what old looks like; keeping them apart from young is what lets
    // a caption's age be read off the picture.
    let hair_color = if age == "old" { rng.pick(&["grey", "white"]) } else { rng.pick(&["black", "brown", "blonde", "red"]) };
    let hair_style = if gender == "man" { rng.pick(&["full", "full", "receding", "receding", "bald"]) } else { "full" };
    let beard = gender == "man" && rng.chance(0.4);
    // Hair must stand out from the background (no blonde on yellow, no white on white).
    let hair_rgb = lookup(&HAIR, hair_color);
    let contrast = |c: &Rgb| c.iter().zip(&hair_rgb).map(|(x, y)| (*x as i32 - *y as i32).abs()).sum::<i32>();
    let backgrounds: Vec<&'static str> = BACKGROUNDS.iter().filter(|b| contrast(&b.1) > 120).map(|b| b.0).collect();
    FaceAttrs {
        gender,
        age,
        expression: rng.pick(&["smiling", "sad"]),
        hair_color,
        hair_style,
        glasses: rng.chance(0.4),
        beard,
        skin: rng.pick(&SKINS).0,
        background: rng.pick(&backgrounds),
    }
}

pub fn render(a: &FaceAttrs, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut cv = Canvas::new(size, jitter(lookup(&BACKGROUNDS, a.background), 6, rng));
    let skin = jitter(lookup(&SKINS, a.skin), 6, rng);
    let hair = jitter(lookup(&HAIR, a.hair_color), 6, rng);
    let shade = mix(skin, [40, 20, 10], 0.3);
    let line = mix(skin, [30, 10, 0], 0.32);
    let (cx, cy) = (0.5 + rng.range(-0.015, 0.015), 0.47 + rng.range(-0.01, 0.01));
    let (rx, ry) = (0.2 * rng.range(0.95, 1.06), 0.26 * rng.range(0.96, 1.04));
    let woman = a.gender == "woman";
    let old = a.age == "old";

    cv.ellipse(0.5, 1.1, 0.42, 0.3, jitter(rng.pick(&SHIRTS), 10, rng));
    if woman {
        // Long hair falls behind the neck onto the shoulders.
        cv.ellipse(cx, cy - 0.01, rx + 0.06, ry + 0.05, hair);
        cv.rect(cx - rx - 0.06, cy, cx + rx + 0.06, cy + 0.3, hair);
        cv.ellipse(cx, cy + 0.3, rx + 0.06, 0.06, hair);
    }
    cv.rect(cx - 0.075, cy + ry - 0.1, cx + 0.075, cy + ry + 0.12, shade);
    // Long hair covers the ears.
    for side in [-1.0, 1.0].into_iter().filter(|_| !woman) {
        cv.ellipse(cx + side * rx, cy + 0.02, 0.035, 0.055, shade);
    }
    cv.ellipse(cx, cy, rx, ry, skin);

    let (eye_dx, eye_y) = (0.08, cy - 0.015);
    if old {
        let w = 0.009;
        for k in 0..3 {
            let y = cy - ry * 0.62 + k as f32 * 0.024;
            cv.polyline(&arc(cx, y + 0.1, 0.09 - k as f32 * 0.012, 0.1, -2.2, -0.95, 12), w, line);
        }
        for side in [-1.0f32, 1.0] {
            let ex = cx + side * (eye_dx + 0.045);
            for dy in [-0.018, 0.0, 0.018] {
                cv.line((ex + side * 0.008, eye_y + dy * 0.5), (ex + side * 0.035, eye_y + dy * 1.6), w, line);
            }
            // Eye bags and the folds from nose to mouth corners.
            cv.polyline(&arc(cx + side * eye_dx, eye_y + 0.02, 0.03, 0.018, 0.4, 2.7, 8), w, line);
            let (n, m) = ((cx + side * 0.045, cy + 0.07), (cx + side * 0.085, cy + 0.165));
            cv.polyline(&[n, (n.0 + side * 0.03, (n.1 + m.1) / 2.0), m], w, line);
        }
    } else {
        let blush = mix(skin, [235, 90, 110], if woman { 0.35 } else { 0.18 });
        for side in [-1.0, 1.0] {
            cv.ellipse(cx + side * 0.12, cy + 0.08, 0.04, 0.025, blush);
        }
    }

    draw_hair(&mut cv, a, hair, skin, (cx, cy, rx, ry), rng);

    cv.polyline(&[(cx, cy + 0.005), (cx - 0.022, cy + 0.085), (cx + 0.012, cy + 0.092)], 0.013, shade);

    let mouth_y = cy + 0.165;
    if a.beard {
        let (bx, by, brx, bry) = (cx, cy + 0.015, rx + 0.012, ry + 0.03);
        cv.fill((bx - brx, cy, bx + brx, by + bry), hair, |x, y| {
            let d = (x - cx) / rx;
            in_ellipse(x, y, bx, by, brx, bry) && y > cy + 0.11 - 0.05 * d * d
        });
    }
    let lips = if woman { [205, 30, 65] } else { mix(skin, [120, 20, 30], 0.6) };
    // Since version 2 the smile is a wide open mouth with a pixel-high row of teeth at 32 px
    // (version 1's was 2/3 as wide with teeth a third of a pixel high): a mood a 32 px model
    // has to see, not guess.
    if a.expression == "smiling" {
        let (mx, my, mrx, mry) = (cx, mouth_y - 0.02, 0.095, 0.075);
        cv.fill((mx - mrx, my, mx + mrx, my + mry), lips, |x, y| y >= my && in_ellipse(x, y, mx, my, mrx, mry));
        let (trx, try_) = (mrx - 0.015, mry - 0.015);
        cv.fill((mx - trx, my, mx + trx, my + 0.034), [250, 250, 245], |x, y| {
            y >= my + 0.004 && y <= my + 0.034 && in_ellipse(x, y, mx, my, trx, try_)
        });
    } else {
        let w = if woman { 0.026 } else { 0.02 };
        cv.polyline(&arc(cx, mouth_y + 0.045, 0.06, 0.04, -2.6, -0.54, 14), w, lips);
    }

    // Pale blonde brows would vanish on light skin.
    let brow = if a.hair_color == "blonde" { mix(hair, [80, 60, 30], 0.35) } else { hair };
    for side in [-1.0f32, 1.0] {
        let ex = cx + side * eye_dx;
        cv.ellipse(ex, eye_y, 0.04, 0.024, [250, 250, 250]);
        cv.circle(ex, eye_y, 0.018, [70, 45, 30]);
        cv.circle(ex, eye_y, 0.009, [10, 10, 10]);
        // Sad brows rise towards the middle of the face.
        let (inner_up, outer_up) = if a.expression == "sad" { (0.035, -0.012) } else { (0.0, 0.008) };
        let by = eye_y - 0.05;
        cv.polyline(
            &[(ex + side * 0.045, by - outer_up), (ex, by - 0.008 - (inner_up + outer_up) / 2.0), (ex - side * 0.04, by - inner_up)],
            0.017,
            brow,
        );
    }
    // Since version 2 the frames are a pixel wide at 32 px (version 1's were 0.4 px, a faint
    // grey after downsampling, and black on dark skin): dark on light and tan skin, silver on
    // brown and dark skin, so they stand off every face.
    if a.glasses {
        let frame = if matches!(a.skin, "light" | "tan") { [25, 25, 30] } else { [215, 218, 225] };
        let (r, w) = (0.058, 0.03);
        for side in [-1.0f32, 1.0] {
            let ex = cx + side * eye_dx;
            cv.ring(ex, eye_y, r, w, frame);
            cv.line((ex + side * r, eye_y - 0.01), (cx + side * rx, eye_y - 0.02), w, frame);
        }
        cv.polyline(&arc(cx, eye_y + 0.005, eye_dx - r, 0.015, -2.8, -0.34, 8), w, frame);
    }
    cv.downsample()
}

/// `head` is (cx, cy, rx, ry). The cap is the band between the head and a slightly larger
/// ellipse, plus the part of the head above the hairline; receding pushes the hairline back
/// in an M, bald keeps only the tufts above the ears.
fn draw_hair(cv: &mut Canvas, a: &FaceAttrs, hair: Rgb, skin: Rgb, head: (f32, f32, f32, f32), rng: &mut Rng) {
    let (cx, cy, rx, ry) = head;
    let (ox, oy, orx, ory) = (cx, cy - 0.012, rx + 0.028, ry + 0.04);
    let bbox = (ox - orx, oy - ory, ox + orx, cy);
    let in_cap = move |x: f32, y: f32| in_ellipse(x, y, ox, oy, orx, ory);
    let in_head = move |x: f32, y: f32| in_ellipse(x, y, cx, cy, rx, ry);
    let fringe = cy - ry * if a.gender == "woman" { 0.45 } else { 0.55 } + rng.range(-0.01, 0.01);
    let part = rng.range(-0.6, 0.6);
    match a.hair_style {
        "full" => cv.fill(bbox, hair, move |x, y| {
            let d = (x - cx) / rx;
            // Curtain bangs, parted off-centre: the fringe is highest at the parting.
            let hairline = fringe - 0.02 + 0.05 * ((d - part).abs()).min(1.0);
            in_cap(x, y) && y < cy - 0.05 && (!in_head(x, y) || y < hairline || d.abs() > 0.88)
        }),
        "receding" => cv.fill(bbox, hair, move |x, y| {
            let d = (x - cx) / rx;
            // The M of a receding hairline: a high forehead, higher still at the temples.
            let t = (d.abs() - 0.5) / 0.3;
            let temple = (1.0 - t * t).max(0.0);
            let hairline = fringe - 0.07 - 0.09 * temple;
            in_cap(x, y) && y < cy - 0.05 && (!in_head(x, y) || y < hairline || d.abs() > 0.9)
        }),
        _ => {
            cv.fill(bbox, hair, move |x, y| {
                let d = (x - cx) / rx;
                in_cap(x, y) && !in_head(x, y) && d.abs() > 0.75 && y > cy - 0.13
            });
            // The shine on top is what reads as "bald" at 64 px.
            cv.ellipse(cx - rx * 0.3, cy - ry * 0.78, rx * 0.2, ry * 0.07, mix(skin, [255, 252, 245], 0.6));
        }
    }
}

pub fn captions(a: &FaceAttrs, rng: &mut Rng) -> Vec<String> {
    let man = a.gender == "man";
    let he = if man { "He" } else { "She" };
    let he_lc = if man { "he" } else { "she" };
    let noun = |rng: &mut Rng| if man { rng.pick(&["man", "man", "guy", "gentleman"]) } else { rng.pick(&["woman", "woman", "lady"]) };
    let age = |rng: &mut Rng| if a.age == "old" { rng.pick(&["old", "elderly", "aged", "old"]) } else { rng.pick(&["young", "youthful", "young"]) };
    let mood = |rng: &mut Rng| if a.expression == "smiling" { rng.pick(&["smiling", "happy", "cheerful"]) } else { rng.pick(&["sad", "unhappy", "frowning"]) };
    let hc = |rng: &mut Rng| if a.hair_color == "grey" { rng.pick(&["grey", "gray"]) } else { a.hair_color };
    let hair = |rng: &mut Rng| -> String {
        match a.hair_style {
            "full" if man => format!("{}{} hair", rng.pick(&["", "short "]), hc(rng)),
            "full" => format!("long {} hair", hc(rng)),
            "receding" => rng.pick(&["a receding hairline", "receding {} hair"]).replace("{}", hc(rng)),
            _ => rng.pick(&["a bald head", "a shaved head"]).to_string(),
        }
    };
    let style = |rng: &mut Rng| -> String {
        match a.hair_style {
            "full" => format!("{} hair", hc(rng)),
            "receding" => "receding hairline".into(),
            _ => "bald".into(),
        }
    };
    let glasses = |rng: &mut Rng| if a.glasses { rng.pick(&["glasses", "spectacles", "eyeglasses"]) } else { "" };
    let wearing = |rng: &mut Rng| if a.glasses { format!("wearing {}", glasses(rng)) } else { rng.pick(&["no glasses", "without glasses"]).into() };
    let beard = |rng: &mut Rng| if a.beard { rng.pick(&["a beard", "a full beard", "a thick beard"]) } else { "" };
    let with_extras = |rng: &mut Rng| -> String {
        let mut parts = vec![hair(rng)];
        if a.glasses {
            parts.push(glasses(rng).into());
        }
        if a.beard {
            parts.push(beard(rng).into());
        }
        join_and(&parts)
    };
    let skin = |rng: &mut Rng| format!("{} skin", a.skin).replace("light skin", rng.pick(&["light skin", "fair skin"]));
    let bg = a.background;
    let ing = |rng: &mut Rng| if a.expression == "smiling" { rng.pick(&["smiling", "grinning"]) } else { rng.pick(&["frowning", "looking sad"]) };

    let mut out = Vec::with_capacity(10);
    out.push(format!("a {} {} {} with {}", mood(rng), age(rng), noun(rng), with_extras(rng)));
    out.push(format!("{he} is {}, {}, {}", age(rng), style(rng), wearing(rng)));
    out.push(format!("portrait of a {} {} who is {}, with {} and {}, on a {bg} background", age(rng), noun(rng), ing(rng), hair(rng), skin(rng)));
    let bearded = if a.beard { "bearded " } else if man && rng.chance(0.5) { "clean-shaven " } else { "" };
    let look = if a.expression == "smiling" { rng.pick(&["happy", "cheerful"]) } else { rng.pick(&["sad", "unhappy"]) };
    out.push(format!("a {} {bearded}{} looking {look}", age(rng), noun(rng)));
    let mut parts = vec![hair(rng), wearing(rng)];
    if a.beard {
        parts.push(beard(rng).into());
    }
    parts.push(mood(rng).into());
    out.push(format!("cartoon face of a {} {}: {}", age(rng), noun(rng), parts.join(", ")));
    let specs = if a.glasses { format!(" and wears {}", glasses(rng)) } else { String::new() };
    let look = if a.expression == "smiling" { rng.pick(&["happy", "cheerful"]) } else { rng.pick(&["sad", "unhappy"]) };
    out.push(format!("{he} looks {look} and {}; {he_lc} has {}{specs}", age(rng), hair(rng)));
    let wrinkled = if a.age == "old" && rng.chance(0.5) { ", wrinkles" } else { "" };
    out.push(format!("close-up of a {} {} with {}, {}{wrinkled}, {bg} background", age(rng), noun(rng), skin(rng), hair(rng)));
    out.push(format!("{} {}, {}, {}, {}, {bg} backdrop", age(rng), noun(rng), style(rng), mood(rng), wearing(rng)));
    let beard_part = if a.beard { format!(", with {}", beard(rng)) } else { String::new() };
    out.push(format!("this {} is {} and {}{beard_part}{}", noun(rng), age(rng), mood(rng), if a.glasses { ", glasses on" } else { "" }));
    out.push(format!("a drawing of a {} {} who is {}, with {}", mood(rng), noun(rng), age(rng), with_extras(rng)));
    out
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
